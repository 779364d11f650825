import pytest
from django.contrib.auth.models import Group

from apps.core.actors import Actor
from apps.governance.services import control_pack_load
from apps.permissions.services import object_permission_grant
from tests.factories import UserFactory

EU = "eu-ai-act-high-risk"
NIST = "nist-ai-rmf"


@pytest.fixture
def eu_pack(world):
    return control_pack_load(actor=Actor(user=world.governance), slug=EU).pack


@pytest.fixture
def support_officer(world):
    """An officer of the support business unit: may view and change the replies use case only (not in the
    demo's Governance group, which is granted both use cases)."""
    user = UserFactory(username="support-officer")
    group = Group.objects.create(name="Support governance")
    user.groups.add(group)
    for codename in ("view_usecase", "change_usecase"):
        object_permission_grant(group=group, codename=codename, obj=world.replies)
    return user
