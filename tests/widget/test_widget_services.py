"""Issuing links and naming origins, through the services every entry point uses."""

import datetime as dt

import pytest

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.widget.origins import origin_normalize, origins_valid
from apps.widget.services import use_case_embed_origins_set, widget_token_issue


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        ("https://crm.example.com", "https://crm.example.com"),
        (" HTTPS://CRM.Example.com/ ", "https://crm.example.com"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("https://crm.example.com/path", None),
        ("https://crm.example.com?x=1", None),
        ("https://crm.example.com#x", None),
        ("https://user:pw@crm.example.com", None),
        ("crm.example.com", None),
        ("ftp://crm.example.com", None),
        ("javascript:alert(1)", None),
        ("https://*.example.com", None),
        ("https://crm.example.com; script-src *", None),
        ("https://crm.example.com 'unsafe-inline'", None),
        ("https://crm.example.com:99999", None),
        ("https://", None),
        ("'self'", None),
        ("", None),
    ],
)
def test_origin_is_scheme_host_and_port_only(value, origin):
    assert origin_normalize(value) == origin


def test_only_well_formed_stored_origins_reach_the_header():
    assert origins_valid(["https://a.example", "https://A.example", "x; y", 3]) == ["https://a.example"]
    assert origins_valid("https://a.example") == []


def test_issue_checks_permission_subject_and_ttl(world):
    with pytest.raises(PermissionDenied):
        widget_token_issue(actor=Actor(user=world.governance), use_case=world.churn, subject_key="ACC-1")
    with pytest.raises(PermissionDenied):
        widget_token_issue(actor=Actor.for_system("task"), use_case=world.churn, subject_key="ACC-1")
    integrator = Actor(user=world.integrator)
    with pytest.raises(ServiceError) as error:
        widget_token_issue(actor=integrator, use_case=world.churn, subject_key="   ")
    assert error.value.field == "subject"
    for ttl in (dt.timedelta(minutes=14), dt.timedelta(minutes=61)):
        with pytest.raises(ServiceError) as error:
            widget_token_issue(actor=integrator, use_case=world.churn, subject_key="ACC-1", ttl=ttl)
        assert error.value.field == "ttl"
    link = widget_token_issue(actor=integrator, use_case=world.churn, subject_key="ACC-1")
    assert link.expires_at - link.widget_token.issued_at == dt.timedelta(minutes=30)


def test_origins_need_change_usecase(world):
    with pytest.raises(PermissionDenied):
        use_case_embed_origins_set(actor=Actor(user=world.integrator), use_case=world.churn, origins=["https://a.b"])
    use_case = use_case_embed_origins_set(actor=Actor(user=world.admin), use_case=world.churn, origins=[])
    assert use_case.embed_origins == []
    with pytest.raises(ServiceError) as error:
        use_case_embed_origins_set(
            actor=Actor(user=world.admin), use_case=world.churn, origins=[f"https://h{i}.example" for i in range(21)]
        )
    assert error.value.field == "embed_origins"
