"""Helpers for delivery tests: outputs that pass the churn policy, and destinations on local servers."""

import pytest

from apps.connectors.models import Connector, Destination
from apps.core.actors import Actor
from apps.workflows.services import Draft, recommendation_submit


@pytest.fixture
def allowed(world):
    """Submit churn outputs the active policy allows (confident, small discount): they go out at once."""

    def submit(n=1, *, use_case=None, text="Call the sponsor this week.", start=1, **extra):
        use_case = use_case or world.churn
        drafts = [
            Draft(
                subject_key=f"ACC-{start + i:04d}",
                content={"text": text, "score": 0.81},
                confidence=extra.get("confidence", 0.92),
                proposed_action={"type": "crm_task", "discount_pct": 5},
                context=extra.get("context", {}),
            )
            for i in range(n)
        ]
        recommendations = recommendation_submit(actor=Actor(user=world.integrator), use_case=use_case, drafts=drafts)
        assert {r.status for r in recommendations} <= {"delivering", "approved"}, [r.status for r in recommendations]
        return recommendations

    return submit


@pytest.fixture
def add_destination(world):
    """A destination for the churn use case, replacing the demo's CRM write-back unless `keep_crm`."""

    def add(kind: str, connector: Connector, *, name: str = "", table: str = "", config=None, keep_crm=False):
        destination = Destination.objects.create(
            name=name or f"{kind} via {connector.name}",
            kind=kind,
            connector=connector,
            table=table,
            config=config or {},
        )
        if not keep_crm:
            world.churn.destinations.remove(world.crm_tasks)
        world.churn.destinations.add(destination)
        return destination

    return add
