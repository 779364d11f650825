"""The permission matrix (issue 7): every URL name × the methods it serves × every role × (own, other, none)
object answers what tests/core/permission_matrix.py's rule table says. Generated from the URL conf: a URL name
without a rule fails test_every_url_name_has_a_rule, and an API view serving a method without a rule fails
test_every_api_method_has_a_rule.

One world is built for the module (inside a transaction rolled back at the end) and every request runs in a
savepoint rolled back after it, so a permitted POST changes nothing the next request sees."""

import copy
import shutil

import pytest
from django.db import transaction
from django.urls import get_resolver, reverse
from rest_framework.test import APIClient

from apps.core import clock
from apps.core.actors import Actor
from apps.permissions.services import api_key_create
from apps.workflows.demo.world import build_world
from tests.core.permission_matrix import (
    ADMIN,
    BODIES,
    EXECUTIVE,
    FIXED_KWARGS,
    GOVERNANCE,
    INTEGRATOR,
    KEY_SCOPES,
    MIXED,
    NO_OBJECT,
    OTHER_MARKER,
    OUTSIDER,
    REVIEWER,
    ROLES,
    RULES,
    SHOWS_EVERY_USE_CASE,
    URL_KWARGS,
    columns,
    expected,
    guessed_side,
    other_side,
    own_side,
)
from tests.factories import UserFactory
from tests.routes import url_patterns

# Marks the module as using the database, so that the test database is set up for the module-wide world.
pytestmark = pytest.mark.django_db

ROUTES = dict(url_patterns())
SERVED = ("GET", "POST")


def _nested(name: str) -> bool:
    return ROUTES[name].count("<") > 1


def _is_api(name: str) -> bool:
    return name.startswith("api-")


class Matrix:
    """The world, its sides and one client per role; `call` makes one request and undoes what it changed."""

    def __init__(self, world):
        self.world = world
        self.own = own_side(world)
        self.other = other_side(world)
        self.none = guessed_side()
        users = {
            ADMIN: world.admin,
            GOVERNANCE: world.governance,
            REVIEWER: world.reviewer,
            EXECUTIVE: world.executive,
            INTEGRATOR: world.integrator,
            OUTSIDER: world.outsider,
        }
        # Each role's own API key: the object "own" names on the key pages.
        self.own_keys = {
            role: api_key_create(actor=Actor(user=user), user=user, name="own")[0] for role, user in users.items()
        }
        self.clients = {}
        for role in ROLES:
            client = APIClient()
            client.raise_request_exception = False  # a crash is a 500 in the matrix, not an error of the test
            if role in users:
                client.force_login(users[role])
            elif role in KEY_SCOPES:
                _, raw = api_key_create(
                    actor=Actor(user=world.integrator), user=world.integrator, name=role, scopes=KEY_SCOPES[role]
                )
                client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
            self.clients[role] = (client, copy.deepcopy(client.cookies))

    def side(self, column: str, role: str):
        if column == "other":
            return self.other
        if column == "none":
            return self.none
        own = copy.copy(self.own)
        own.api_key = self.own_keys.get(role, self.own.api_key)
        return own

    def url(self, name: str, column: str, role: str) -> str:
        if name in FIXED_KWARGS:
            return reverse(name, kwargs=FIXED_KWARGS[name])
        if column == NO_OBJECT or name not in URL_KWARGS:  # no object, or named in the body
            return reverse(name)
        kwargs = URL_KWARGS[name](self.side("other" if column == MIXED else column, role))
        if column == MIXED:  # the own parent, the other side's child
            parent = next(iter(kwargs))
            kwargs[parent] = URL_KWARGS[name](self.side("own", role))[parent]
        return reverse(name, kwargs=kwargs)

    def call(self, name: str, method: str, role: str, column: str):
        client, cookies = self.clients[role]
        url = self.url(name, column, role)
        side = self.side("own" if column in (NO_OBJECT, MIXED) else column, role)
        with transaction.atomic():
            if method == "GET":
                response = client.get(url)
            else:
                body = BODIES[name](side) if name in BODIES else {}
                response = client.post(url, body, format="json" if _is_api(name) else "multipart")
            # Read a streamed body (exports) now, while what it reads is still there.
            response.body = b"".join(response.streaming_content) if response.streaming else response.content
            transaction.set_rollback(True)
        client.cookies = copy.deepcopy(cookies)  # a logout or a message must not carry over to the next call
        return response


@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker, demo_artifacts, tmp_path_factory):
    """One demo world for every URL of the matrix, built once and rolled back after the module."""
    demo_dir = tmp_path_factory.mktemp("matrix") / "demo"
    shutil.copytree(demo_artifacts, demo_dir)
    with django_db_blocker.unblock(), transaction.atomic():
        world = build_world(demo_dir=demo_dir, password="demo-pass-123!", now=clock.now(), artifacts_ready=True)
        world.outsider = UserFactory(username="outsider")
        yield Matrix(world)
        transaction.set_rollback(True)


def test_every_url_name_has_a_rule():
    """A new view fails here until the rule table says who may use it (and a removed one until its rule goes)."""
    named = set(ROUTES)
    missing = sorted(named - set(RULES))
    stale = sorted(set(RULES) - named)
    assert not missing, f"URL names without a rule in tests/core/permission_matrix.py: {missing}"
    assert not stale, f"rules for URL names that no longer exist: {stale}"


def test_every_object_url_has_its_objects():
    """Every URL with parameters names its objects on each side (or is a fixed, non-object parameter)."""
    with_parameters = {name for name, route in ROUTES.items() if "<" in route}
    assert with_parameters == set(URL_KWARGS) | set(FIXED_KWARGS)
    for name in URL_KWARGS:
        assert all(op.see is not None for op in RULES[name].values()), f"{name} names an object: use on(...)"


def _api_methods(name: str) -> set[str]:
    view_class = get_resolver().resolve(reverse(name, kwargs=_any_kwargs(name))).func.view_class
    return {m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)}


def _any_kwargs(name: str) -> dict:
    if name in FIXED_KWARGS:
        return FIXED_KWARGS[name]
    return URL_KWARGS[name](guessed_side()) if name in URL_KWARGS else {}


def test_every_api_method_has_a_rule():
    """Each API operation's rule covers exactly the methods its view serves (a new method needs a rule)."""
    wrong = {}
    for name in RULES:
        if _is_api(name) and name not in ("api-schema", "api-docs"):
            served = _api_methods(name)
            if served != set(RULES[name]):
                wrong[name] = {"view": sorted(served), "rule": sorted(RULES[name])}
    assert not wrong, wrong


def cases(name: str):
    """(method, role, column, expected answer) for one URL name."""
    for method, op in RULES[name].items():
        for column in columns(op, nested=_nested(name)):
            for role in ROLES:
                expect = expected(op, method, role, column, api=_is_api(name))
                if expect is not None:
                    yield method, role, column, expect


def _shows_the_other_side(name: str, role: str, column: str, response) -> bool:
    """Lists and pages filter what they show: nothing of the other side reaches a role without a grant on it
    (unless the caller named it: an error may repeat the slug it was sent)."""
    if role == ADMIN or column not in ("own", "none", NO_OBJECT) or name in SHOWS_EVERY_USE_CASE:
        return False
    return OTHER_MARKER.lower().encode() in response.body.lower()


@pytest.mark.parametrize("name", sorted(RULES))
def test_permission_matrix(matrix, name):
    mismatches = []
    for method, role, column, expect in cases(name):
        response = matrix.call(name, method, role, column)
        if not expect(response):
            where = response.get("Location", "")
            got = f"{response.status_code}{f' → {where}' if where else ''}"
            mismatches.append(f"  {method} {role:<26} {column:<6} expected {expect.label}, got {got}")
        elif _shows_the_other_side(name, role, column, response):
            mismatches.append(f"  {method} {role:<26} {column:<6} shows objects of the other side ({OTHER_MARKER})")
    # The methods a URL does not serve answer 405 (so the table lists every method a view serves).
    for method in SERVED:
        if method not in RULES[name]:
            column = columns(next(iter(RULES[name].values())), nested=False)[0]
            response = matrix.call(name, method, ADMIN, column)
            if response.status_code != 405:
                mismatches.append(f"  {method} not in the rule, but answered {response.status_code} (not 405)")
    assert not mismatches, f"{name}:\n" + "\n".join(mismatches)


def test_an_officer_sends_outputs_only_to_a_queue_they_may_see(matrix):
    """The queue's reviewers read every output sent to review: an officer of Sales may not route the churn
    use case's outputs to the Legal unit's queue (found by the matrix: the settings form offered every queue)."""
    from apps.core.exceptions import ServiceError
    from apps.workflows.services import use_case_settings_update

    world = matrix.world
    with transaction.atomic():
        with pytest.raises(ServiceError) as refused:
            use_case_settings_update(
                actor=Actor(user=world.governance),
                use_case=world.churn,
                values={"review_queue": matrix.other.queue},
                reason="Move the queue",
            )
        assert refused.value.field == "review_queue"
        use_case_settings_update(
            actor=Actor(user=world.governance),
            use_case=world.churn,
            values={"review_queue": world.replies_queue},
            reason="A queue the officer sees",
        )
        transaction.set_rollback(True)
