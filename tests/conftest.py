import os
import shutil

import pytest
from django.conf import settings

from apps.core import clock
from apps.core.actors import Actor
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clear_policy_cache():
    from apps.policies import evaluation

    evaluation._version_rules.cache_clear()


@pytest.fixture(scope="session")
def demo_artifacts(tmp_path_factory):
    """The demo's outside systems (source database, trained models), built once per test session."""
    from apps.workflows.demo.world import build_demo_artifacts

    path = tmp_path_factory.mktemp("demo-artifacts")
    build_demo_artifacts(path, now=clock.now())
    return path


@pytest.fixture
def world(db, tmp_path, demo_artifacts):
    """The demo company (users, grants, connectors, policies, two use cases), without history. Each test
    gets its own copy of the source database, since deliveries write back into it."""
    from apps.workflows.demo.world import build_world

    demo_dir = tmp_path / "demo"
    shutil.copytree(demo_artifacts, demo_dir)
    world = build_world(demo_dir=demo_dir, password="demo-pass-123!", now=clock.now(), artifacts_ready=True)
    world.outsider = UserFactory(username="outsider")
    return world


@pytest.fixture
def outsider(world):
    """A logged-in-able user with no group and no grant."""
    return world.outsider


@pytest.fixture
def reviewer_client(client, world):
    client.force_login(world.reviewer)
    return client


@pytest.fixture
def second_reviewer(world):
    """Another reviewer of the churn queue."""
    user = UserFactory(username="reviewer-two")
    user.groups.add(world.churn_reviewers)
    return user


@pytest.fixture
def lead(world):
    """A lead of the churn queue: in the queue's lead group, with review and lead grants."""
    from django.contrib.auth.models import Group

    from apps.permissions.services import object_permission_grant

    group = Group.objects.create(name="Churn leads")
    for codename in ("view_reviewqueue", "review_reviewqueue", "lead_reviewqueue"):
        object_permission_grant(group=group, codename=codename, obj=world.churn_queue)
    world.churn_queue.lead_group = group
    world.churn_queue.save()
    user = UserFactory(username="churn-lead")
    user.groups.add(group)
    return user


@pytest.fixture
def queued_recommendation(world):
    """A recommendation that the active policy sends to review (low confidence / refund promise)."""
    from apps.workflows.services import Draft, recommendation_submit

    def make(use_case=None, text="Offer a 20% renewal discount and call the sponsor.", confidence=0.4, **extra):
        use_case = use_case or world.churn
        default_action = {"type": "crm_task", "discount_pct": 5}
        if use_case == world.replies and "refund" not in text.lower():
            text += " We will refund the charge."
        (recommendation,) = recommendation_submit(
            actor=Actor(user=world.integrator),
            use_case=use_case,
            drafts=[
                Draft(
                    subject_key=extra.pop("subject_key", "ACC-0001" if use_case == world.churn else "TCK-0001"),
                    content={"text": text},
                    confidence=confidence,
                    proposed_action=extra.pop("proposed_action", default_action),
                    context=extra.pop("context", {"subject": "Billing question"}),
                    **extra,
                )
            ],
        )
        assert recommendation.status == "queued_for_review", recommendation.status
        return recommendation

    return make


def pytest_collection_modifyitems(config, items):
    """Browser tests need Chromium; outside CI they skip with a reason when it is missing."""
    if os.path.exists(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")) or os.environ.get(
        "DOORSTEP_REQUIRE_BROWSER"
    ):
        return
    skip = pytest.mark.skip(reason="Chromium not installed (apt-get install chromium); CI requires it")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"database: {settings.DATABASES['default']['ENGINE']}, broker: {settings.CELERY_BROKER_URL}"
