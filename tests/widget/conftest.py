import pytest

from apps.core.actors import Actor
from apps.widget.services import widget_token_issue
from apps.workflows.services import Draft, recommendation_submit


@pytest.fixture
def released(world):
    """An output the churn policy lets through on its own (status delivering: no worker in these tests)."""

    def make(subject_key="ACC-0001", text="Schedule a check-in with the sponsor.", **extra):
        (recommendation,) = recommendation_submit(
            actor=Actor(user=world.integrator),
            use_case=extra.pop("use_case", world.churn),
            drafts=[
                Draft(
                    subject_key=subject_key,
                    content={"text": text},
                    confidence=0.95,
                    proposed_action={"type": "crm_task", "discount_pct": 0},
                    **extra,
                )
            ],
        )
        assert recommendation.status == "delivering", recommendation.status
        return recommendation

    return make


@pytest.fixture
def link(world):
    """A widget link issued by the integrator for one subject of the churn use case."""

    def issue(subject_key="ACC-0001", use_case=None, user=None, **options):
        return widget_token_issue(
            actor=Actor(user=user or world.integrator),
            use_case=use_case or world.churn,
            subject_key=subject_key,
            **options,
        )

    return issue
