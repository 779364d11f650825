import pytest
from django.contrib.auth.models import Permission
from guardian.shortcuts import assign_perm

from apps.core.permissions import has_object_permission, restrict
from apps.workflows.models import UseCase
from tests.factories import UserFactory


@pytest.mark.parametrize("how", ["none", "user grant", "group grant", "global permission", "superuser"])
def test_single_object_check_agrees_with_the_list_filter(world, how):
    user = UserFactory(is_superuser=how == "superuser")
    if how == "user grant":
        assign_perm("view_usecase", user, world.churn)
    elif how == "group grant":
        user.groups.add(world.churn_reviewers)  # the churn reviewers' group may view the churn use case
    elif how == "global permission":
        user.user_permissions.add(Permission.objects.get(codename="view_usecase"))
    listed = set(restrict(UseCase.objects.all(), user, "view_usecase"))
    for use_case in (world.churn, world.replies):
        assert has_object_permission(user, "view_usecase", use_case) == (use_case in listed)
    # A global permission never widens what a user sees (PITFALLS #2).
    expected = {"none": set(), "global permission": set(), "superuser": {world.churn, world.replies}}
    assert listed == expected.get(how, {world.churn})
