"""Cost reconciliation: a provider's usage export (CSV) against the summed per-call estimates (Run.cost) per day
and endpoint; differences over the threshold are flagged; a bad file is refused whole with row and field."""

import datetime as dt
import hashlib
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.monitoring import services
from apps.monitoring.models import CostImport, CostImportLine
from apps.permissions.services import object_permission_grant
from apps.workflows.models import Run
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
DAY1, DAY2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


@pytest.fixture
def estimates(world):
    """Estimated cost: churn model 1.00 on day 1 and 2.00 on day 2; reply model 5.00 on day 1."""
    for day, endpoint, cost in ((DAY1, world.churn_model, "0.5"), (DAY1, world.churn_model, "0.5")) + (
        (DAY2, world.churn_model, "2"),
        (DAY1, world.reply_model, "5"),
    ):
        Run.objects.create(
            use_case=world.churn if endpoint == world.churn_model else world.replies,
            subject_key="S",
            trigger="api",
            status="succeeded",
            model_endpoint=endpoint,
            cost=Decimal(cost),
            created_at=timezone.make_aware(dt.datetime.combine(day, dt.time(12))),
        )


def _csv(*rows: str, header="date,endpoint,cost") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def test_an_export_is_compared_per_day_and_endpoint(world, estimates):
    content = _csv(
        f"2026-10-01,{world.churn_model.name},0.60",
        f"2026-10-01,{world.churn_model.name},0.45",  # summed: 1.05 vs 1.00, within 10 %
        f"2026-10-02,{world.churn_model.name},3.00",  # 3.00 vs 2.00: flagged
        f"2026-10-01,{world.reply_model.name},5.00",
    )
    cost_import = services.cost_import_create(
        actor=Actor(user=world.integrator), file_name="usage.csv", content=content, threshold_percent=Decimal("10")
    )
    assert (
        cost_import.file_sha256 == hashlib.sha256(content).hexdigest() and cost_import.uploaded_by == world.integrator
    )
    lines = {(line.day, line.connector_id): line for line in cost_import.lines.all()}
    assert len(lines) == 3
    first = lines[(DAY1, world.churn_model.pk)]
    assert (first.provider_cost, first.estimated_cost, first.flagged) == (Decimal("1.05"), Decimal("1"), False)
    second = lines[(DAY2, world.churn_model.pk)]
    assert second.flagged and second.difference_percent == Decimal("50")
    assert not lines[(DAY1, world.reply_model.pk)].flagged


def test_openai_style_columns_and_model_names_are_accepted(world, estimates):
    world.churn_model.config["model"] = "churn-v3"
    world.churn_model.save()
    start = int(timezone.make_aware(dt.datetime.combine(DAY2, dt.time(0)), dt.UTC).timestamp())
    content = _csv(f"{start},churn-v3,2.10", header="start_time,line_item,amount_value")
    cost_import = services.cost_import_create(
        actor=Actor(user=world.integrator), file_name="openai.csv", content=content, threshold_percent=Decimal("10")
    )
    (line,) = cost_import.lines.all()
    assert line.day == DAY2 and line.connector == world.churn_model and not line.flagged


def test_a_bad_file_is_refused_whole_with_row_and_field(world, estimates):
    content = _csv(
        f"2026-10-01,{world.churn_model.name},0.60",
        f"yesterday,{world.churn_model.name},1",
        "2026-10-01,No such model,1",
        f"2026-10-01,{world.churn_model.name},-3",
    )
    with pytest.raises(ServiceError) as error:
        services.cost_import_create(
            actor=Actor(user=world.integrator), file_name="bad.csv", content=content, threshold_percent=Decimal("10")
        )
    message = error.value.message
    assert error.value.field == "file"
    assert "row 3, date: expected a date" in message
    assert "row 4, endpoint: no model endpoint 'No such model' that you may change" in message
    assert "row 5, cost: expected an amount of 0 or more" in message
    for bad, expected in (
        (b"when,what\n1,2\n", "header: no date column"),
        (_csv(), "file: no data row"),
        (b"\xff\xfe\x00", "file: not UTF-8 text"),
    ):
        with pytest.raises(ServiceError, match=expected):
            services.cost_import_create(
                actor=Actor(user=world.integrator), file_name="x.csv", content=bad, threshold_percent=Decimal("1")
            )
    assert not CostImport.objects.exists() and not CostImportLine.objects.exists()


def test_only_endpoints_the_uploader_may_change_are_accepted(world, estimates):
    # Governance may see the model endpoints but not change them: no line of theirs is accepted.
    with pytest.raises(ServiceError, match="that you may change"):
        services.cost_import_create(
            actor=Actor(user=world.governance),
            file_name="usage.csv",
            content=_csv(f"2026-10-01,{world.churn_model.name},1"),
            threshold_percent=Decimal("10"),
        )


def test_upload_page_and_who_sees_what(client, world, estimates):
    client.force_login(world.integrator)
    upload = SimpleUploadedFile(
        "usage.csv",
        _csv(f"2026-10-02,{world.churn_model.name},3", f"2026-10-01,{world.reply_model.name},5"),
        content_type="text/csv",
    )
    response = client.post(reverse("monitor:cost-list"), {"file": upload, "threshold_percent": "10"})
    cost_import = CostImport.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("monitor:cost-detail", args=[cost_import.pk])
    body = client.get(response["Location"]).content.decode()
    assert "Over threshold" in body and "(50.0 %)" in body and cost_import.file_sha256 in body
    bad = SimpleUploadedFile("bad.csv", _csv("2026-13-01,x,1"), content_type="text/csv")
    response = client.post(
        reverse("monitor:cost-list"), {"file": bad, "threshold_percent": "10"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "row 2, date: expected a date" in response.content.decode()
    assert CostImport.objects.count() == 1

    # A user who sees only the churn classifier sees the import and only that endpoint's line.
    watcher = UserFactory(username="model-watcher")
    group = Group.objects.create(name="Model watchers")
    watcher.groups.add(group)
    object_permission_grant(group=group, codename="view_connector", obj=world.churn_model)
    client.force_login(watcher)
    assert "usage.csv" in client.get(reverse("monitor:cost-list")).content.decode()
    body = client.get(reverse("monitor:cost-detail", args=[cost_import.pk])).content.decode()
    assert world.churn_model.name in body and world.reply_model.name not in body
    client.force_login(world.outsider)
    assert "usage.csv" not in client.get(reverse("monitor:cost-list")).content.decode()
    assert client.get(reverse("monitor:cost-detail", args=[cost_import.pk])).status_code == 404
