import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from apps.reporting.models import BusinessOutcome, DailyRollup
from apps.reviews.models import ReviewTask
from apps.workflows.events import chain_verify
from apps.workflows.models import Recommendation, RecommendationEvent, UseCase

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.DOORSTEP_DEMO_DIR = tmp_path / "demo"
    settings.DOORSTEP_DEMO_PASSWORD = "demo-pass-123!"
    settings.DOORSTEP_AUDIT_DIR = tmp_path / "audit"
    return settings


def test_refuses_with_debug_off_unless_forced(demo_settings):
    demo_settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("load_demo", days=2)
    assert not get_user_model().objects.exists()


def test_loads_history_through_the_real_services(demo_settings, tmp_path):
    call_command("load_demo", days=3, force=True)
    assert set(get_user_model().objects.values_list("username", flat=True)) >= {
        "admin",
        "governance",
        "reviewer",
        "executive",
        "integrator",
    }
    assert (tmp_path / "demo_password").read_text() == "demo-pass-123!"
    assert Recommendation.objects.filter(status="delivered").exists()
    assert RecommendationEvent.objects.filter(type="accepted").exists()
    assert ReviewTask.objects.exclude(status="decided").exists()  # something for the reviewer to do
    assert DailyRollup.objects.exists()
    churn = UseCase.objects.get(slug="churn-risk")
    assert churn.holdout_share > 0 and BusinessOutcome.objects.filter(use_case=churn).exists()
    assert all(chain_verify(r) is None for r in Recommendation.objects.all()[:50])
    call_command("audit_verify")  # the demo's history is sealed, its head exported and signed
    assert list((tmp_path / "audit" / "heads").glob("head-*.json"))
    call_command("load_demo", if_empty=True, force=True)  # a second start skips the load
    assert get_user_model().objects.filter(username="admin").count() == 1
