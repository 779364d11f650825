"""The permission matrix: for every URL name and HTTP method it serves, who is allowed on an object their grants
cover ("own"), what the same kind of object answers when no grant covers it ("other"), and what a guessed id
answers ("none"); written from the product's rules (PRODUCT.md: who does what; apps/workflows/demo/world.py:
who holds which grant), not recorded from the code's answers.

The roles are the demo's users: admin (a superuser), governance, reviewer (the churn queue only), executive
(reads, never decides or edits), integrator, and an outsider with no group and no grant; anonymous too, and on
the API the integrator's keys (one without scope limits, one limited to reading).

"own" objects are the churn side of the world (a recommendation queued in the churn queue, the CRM connector,
the support policy's version in review, ...); "other" objects belong to a use case of another business unit
(Legal, every name marked OTHER_MARKER) whose only grants are held by its own officers, outside the matrix;
"none" names nothing that exists. URLs with a parent and a child id (a policy's version, a connector's dataset)
also get "mixed": the own parent with the other side's child, a 404 even to the admin (no child is reached
through another parent). Besides the status, no answer to a role without a grant on the other side may show
any of its objects (test_permission_matrix checks each body for OTHER_MARKER).

By design an object the caller may not see answers 404 (ids cannot be probed) and one they may see but not
change answers 403; the API answers 400 naming the field when the object is named in the request body.
"""

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace

from django.contrib.auth.models import Group

from apps.connectors.models import Connector, Destination, SourceDataset
from apps.core import clock
from apps.core.actors import Actor
from apps.permissions.models import ApiKey
from apps.permissions.services import api_key_create, object_permission_grant
from apps.policies.models import Policy
from apps.policies.services import (
    policy_version_activate,
    policy_version_create,
    policy_version_review,
    policy_version_submit,
)
from apps.reviews.models import ReviewQueue
from apps.workflows.demo.world import CHURN_RULES
from apps.workflows.models import Run, UseCase
from apps.workflows.services import Draft, recommendation_submit
from tests.factories import UserFactory

# --- roles ------------------------------------------------------------------------------------------------------

ADMIN, GOVERNANCE, REVIEWER, EXECUTIVE, INTEGRATOR = "admin", "governance", "reviewer", "executive", "integrator"
OUTSIDER, ANONYMOUS = "outsider", "anonymous"
KEY, READ_KEY = "integrator key", "integrator read-only key"

LOGGED_IN = (ADMIN, GOVERNANCE, REVIEWER, EXECUTIVE, INTEGRATOR, OUTSIDER)
EVERYONE = (*LOGGED_IN, ANONYMOUS)
# The scopes each key is limited to (empty: every scope its user holds, PRODUCT.md "scoped API keys").
KEY_SCOPES = {KEY: (), READ_KEY: (ApiKey.Scope.READ,)}
ROLES = (*EVERYONE, *KEY_SCOPES)

# Who holds what on the churn side (apps/workflows/demo/world.py, "Grants"); the admin is a superuser.
USE_CASE_VIEW = (ADMIN, GOVERNANCE, REVIEWER, EXECUTIVE, INTEGRATOR)
USE_CASE_CHANGE = (ADMIN, GOVERNANCE)
USE_CASE_RUN = (ADMIN, INTEGRATOR)
POLICY_VIEW = (ADMIN, GOVERNANCE, EXECUTIVE)
POLICY_CHANGE = (ADMIN, GOVERNANCE)
CONNECTOR_VIEW = (ADMIN, GOVERNANCE, INTEGRATOR)
CONNECTOR_USE = (ADMIN, GOVERNANCE, INTEGRATOR)  # officers wire connectors into use cases
CONNECTOR_CHANGE = (ADMIN, INTEGRATOR)
# The review desk (queues, their items) is for those who review the queue; governance may view the queue's
# settings elsewhere, but its items are the reviewers' (DOMAIN.md: "a reviewer acts only on tasks of queues
# granted to them").
QUEUE_REVIEW = (ADMIN, REVIEWER)
QUEUE_LEAD = (ADMIN,)
# Roles, not grants: who loads policy packs (governance officers and admins).
PACK_LOADERS = (ADMIN, GOVERNANCE)

# --- what a response may be -------------------------------------------------------------------------------------

LOGIN_PATH = "/accounts/login/"


def _to_login(response) -> bool:
    return response.get("Location", "").startswith(LOGIN_PATH)


def _error_code(response) -> str:
    if not response.get("Content-Type", "").startswith("application/json"):
        return ""
    try:
        body = json.loads(response.content)
    except ValueError:
        return ""
    return body.get("error", "") if isinstance(body, dict) else ""


@dataclass(frozen=True)
class Expect:
    label: str
    test: Callable = field(compare=False)

    def __call__(self, response) -> bool:
        return self.test(response)


def status(*codes: int) -> Expect:
    return Expect("/".join(map(str, codes)), lambda r: r.status_code in codes)


SHOWN = status(200)
# A POST that went through the permission checks: done (2xx, a redirect), or refused by a form or a state rule
# (400, 409) — but never a refusal of the caller, never a 5xx.
PROCESSED = Expect(
    "processed (2xx, redirect, or a 400/409 form or state error)",
    lambda r: (
        r.status_code in (200, 201, 202, 204, 302, 400, 409)
        and not _to_login(r)
        and _error_code(r) not in ("permission_denied", "not_found")
    ),
)
REDIRECT = Expect("302 (not to login)", lambda r: r.status_code == 302 and not _to_login(r))
LOGIN = Expect("302 to login", lambda r: r.status_code == 302 and _to_login(r))
UNAUTHENTICATED = status(401)
FORBIDDEN = status(403)
NOT_FOUND = status(404)
# An object named in an API body that the caller may not see: the field is named, the object is not revealed.
INVALID = status(400)


# --- the rule table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """What one method of one URL allows. `see` is None when the URL names no object; otherwise the roles that
    see the own object (the others get `hidden`), of whom `allow` may act (the others get `refused`)."""

    allow: frozenset
    see: frozenset | None = None
    ok: Expect | None = None  # default: 200 for GET, PROCESSED for POST
    refused: Expect = FORBIDDEN
    hidden: Expect = NOT_FOUND
    scope: str | None = None  # the API key scope it needs (API operations only)
    gate: frozenset | None = None  # roles checked before the object is looked up (the others: refused anywhere)
    by_grant: bool = True  # False: access does not come from grants on the object, so "other" is like "own"
    admin_sees_all: bool = True  # the superuser sees the other side's object too
    columns: tuple | None = None


def page(allow, **options) -> Op:
    """A URL that names no object: `allow` may use it, the rest are refused."""
    return Op(allow=frozenset(allow), **options)


def on(see, allow, **options) -> Op:
    """A URL (or body) naming an object: `see` see the own one, `allow` may act on it."""
    return Op(allow=frozenset(allow), see=frozenset(see), **options)


READ, REC_WRITE, RUNS_WRITE = ApiKey.Scope.READ, ApiKey.Scope.RECOMMENDATIONS_WRITE, ApiKey.Scope.RUNS_WRITE
FEEDBACK_WRITE, USE_CASES_WRITE = ApiKey.Scope.FEEDBACK_WRITE, ApiKey.Scope.USE_CASES_WRITE
APPROVALS_WRITE, POLICY_REVIEW = ApiKey.Scope.APPROVALS_WRITE, "policies:review"  # no key is limited to the last

PUBLIC = page(EVERYONE)
ANY_USER_GET = {"GET": page(LOGGED_IN)}  # a list or page filtered to what the user may see


def _api_read(see) -> dict:
    return {"GET": on(see, see, scope=READ)}


RULES: dict[str, dict[str, Op]] = {
    # --- accounts, health, home -----------------------------------------------------------------------------
    # Each persona lands on its own home (whatever the method: it only redirects).
    "home": {"GET": page(LOGGED_IN, ok=REDIRECT), "POST": page(LOGGED_IN, ok=REDIRECT)},
    "healthz": {"GET": PUBLIC},
    "readyz": {"GET": page(EVERYONE, ok=status(200, 503))},  # 503 when the test broker does not answer
    "metrics": {"GET": PUBLIC},
    # The login form; a signed-in user is sent home.
    "login": {"GET": page(EVERYONE, ok=status(200, 302)), "POST": page(EVERYONE, ok=status(200, 302))},
    "logout": {"POST": page(EVERYONE, ok=status(302))},
    # Only after a password step (none pending here): back to the login page, whoever asks.
    "accounts:second-factor": {"GET": page(EVERYONE, ok=LOGIN), "POST": page(EVERYONE, ok=LOGIN)},
    "accounts:two-factor": {"GET": page(LOGGED_IN), "POST": page(LOGGED_IN)},  # the user's own authenticator
    # Single sign-on is not configured in tests: both answer with the login page.
    "accounts:sso-start": {"POST": page(EVERYONE, ok=status(302))},
    "accounts:sso-callback": {"GET": page(EVERYONE, ok=status(302))},
    "admin-login": {"GET": page(EVERYONE, ok=LOGIN), "POST": page(EVERYONE, ok=LOGIN)},  # a plain redirect
    # --- API: use cases, recommendations, runs --------------------------------------------------------------
    "api-use-case-list": {"GET": page(LOGGED_IN, scope=READ)},
    # Governance changes: a key needs the use_cases:write scope, and its user change on the use case.
    "api-use-case-transitions": {"POST": on(USE_CASE_VIEW, USE_CASE_CHANGE, scope=USE_CASES_WRITE)},
    "api-recommendation-list": {
        "GET": page(LOGGED_IN, scope=READ),
        # Bring your own model: the use case is named in the body.
        "POST": on(USE_CASE_VIEW, USE_CASE_RUN, ok=status(201), hidden=INVALID, scope=REC_WRITE),
    },
    # Each item stands alone: a refused item is reported in the body, so a batch of one refused item is a 400.
    "api-recommendation-batch": {
        "POST": on(USE_CASE_VIEW, USE_CASE_RUN, ok=status(201), refused=INVALID, hidden=INVALID, scope=REC_WRITE)
    },
    "api-recommendation-detail": _api_read(USE_CASE_VIEW),
    "api-recommendation-trace": _api_read(USE_CASE_VIEW),
    "api-run-list": {"POST": on(USE_CASE_VIEW, USE_CASE_RUN, ok=status(202), hidden=INVALID, scope=RUNS_WRITE)},
    "api-run-detail": _api_read(USE_CASE_VIEW),
    # --- API: review and approvals ----------------------------------------------------------------------------
    "api-review-task-list": {"GET": page(LOGGED_IN, scope=READ)},
    "api-review-task-detail": _api_read(QUEUE_REVIEW),
    "api-review-task-decision": {"POST": on(QUEUE_REVIEW, QUEUE_REVIEW, ok=status(200), scope=REC_WRITE)},
    # An agent asks for a blocking approval: the same right as submitting an output (run).
    "api-approval-list": {
        "POST": on(USE_CASE_VIEW, USE_CASE_RUN, ok=status(201), hidden=INVALID, scope=APPROVALS_WRITE)
    },
    "api-approval-detail": _api_read(USE_CASE_VIEW),
    # --- API: feedback, deliveries, widget links, outcomes ------------------------------------------------------
    "api-feedback": {
        "POST": on(USE_CASE_VIEW, USE_CASE_RUN, ok=status(200), refused=INVALID, hidden=INVALID, scope=FEEDBACK_WRITE)
    },
    "api-delivery-list": {"GET": page(LOGGED_IN, scope=READ)},
    "api-delivery-retry": {"POST": on(USE_CASE_VIEW, USE_CASE_RUN, scope=REC_WRITE)},
    # A link shows the output and records feedback with the issuer's authority: run, and (for a key) read too.
    "api-widget-token-create": {"POST": on(USE_CASE_VIEW, USE_CASE_RUN, ok=status(201), scope=FEEDBACK_WRITE)},
    "api-outcomes": {
        "POST": on(USE_CASE_VIEW, USE_CASE_RUN, ok=status(200), refused=INVALID, hidden=INVALID, scope=FEEDBACK_WRITE)
    },
    # --- API: policies -----------------------------------------------------------------------------------------
    "api-policy-list": {"GET": page(LOGGED_IN, scope=READ)},
    "api-policy-detail": _api_read(POLICY_VIEW),
    "api-policy-version-detail": _api_read(POLICY_VIEW),
    # Maker-checker: the version in review was written by the admin, who may not review it; the policy's
    # approvers are the governance officers. A scoped key never reviews (a person's decision).
    "api-policy-version-review": {"POST": on(POLICY_VIEW, (GOVERNANCE,), scope=POLICY_REVIEW)},
    "api-schema": {"GET": PUBLIC},
    "api-docs": {"GET": PUBLIC},
    # --- review desk -----------------------------------------------------------------------------------------
    "reviews:queue-list": ANY_USER_GET,
    "reviews:dashboard": ANY_USER_GET,
    "reviews:queue-detail": {"GET": on(QUEUE_REVIEW, QUEUE_REVIEW)},
    "reviews:claim-next": {"POST": on(QUEUE_REVIEW, QUEUE_REVIEW)},
    "reviews:queue-bulk-decide": {"POST": on(QUEUE_REVIEW, QUEUE_REVIEW)},
    "reviews:task-detail": {"GET": on(QUEUE_REVIEW, QUEUE_REVIEW)},
    "reviews:task-decide": {"POST": on(QUEUE_REVIEW, QUEUE_REVIEW)},
    "reviews:task-similar": {"GET": on(QUEUE_REVIEW, QUEUE_REVIEW)},
    "reviews:task-renew": {"POST": on(QUEUE_REVIEW, QUEUE_REVIEW)},
    "reviews:task-take-over": {"POST": on(QUEUE_REVIEW, QUEUE_LEAD)},  # a lead of the queue only
    # --- use cases -----------------------------------------------------------------------------------------
    "workflows:use-case-list": ANY_USER_GET,
    # Proposing needs a business unit the user governs (change on one of its use cases).
    "workflows:use-case-propose": {"GET": page(USE_CASE_CHANGE), "POST": page(USE_CASE_CHANGE)},
    "workflows:use-case-detail": {"GET": on(USE_CASE_VIEW, USE_CASE_VIEW)},
    "workflows:use-case-transition": {"POST": on(USE_CASE_VIEW, USE_CASE_CHANGE)},
    "workflows:use-case-sampling": {"POST": on(USE_CASE_VIEW, USE_CASE_CHANGE)},
    "workflows:use-case-settings": {
        "GET": on(USE_CASE_VIEW, USE_CASE_CHANGE),
        "POST": on(USE_CASE_VIEW, USE_CASE_CHANGE),
    },
    # --- policies ------------------------------------------------------------------------------------------
    "policies:policy-list": ANY_USER_GET,
    "policies:policy-detail": {"GET": on(POLICY_VIEW, POLICY_VIEW)},
    "policies:policy-requirements": {"POST": on(POLICY_VIEW, POLICY_CHANGE)},
    "policies:policy-version-new": {"GET": on(POLICY_VIEW, POLICY_CHANGE), "POST": on(POLICY_VIEW, POLICY_CHANGE)},
    "policies:policy-version-detail": {"GET": on(POLICY_VIEW, POLICY_VIEW)},
    "policies:policy-version-diff": {"GET": on(POLICY_VIEW, POLICY_VIEW)},
    "policies:policy-version-review": {"POST": on(POLICY_VIEW, (GOVERNANCE,))},  # maker-checker, as in the API
    "policies:policy-version-submit": {"POST": on(POLICY_VIEW, POLICY_CHANGE)},
    "policies:policy-version-activate": {"POST": on(POLICY_VIEW, POLICY_CHANGE)},
    "policies:policy-version-schedule": {"POST": on(POLICY_VIEW, POLICY_CHANGE)},
    # The emergency path: one approver, never the author (the admin wrote the version).
    "policies:policy-version-emergency": {"POST": on(POLICY_VIEW, (GOVERNANCE,))},
    # Evaluating a sample stores nothing: whoever reads the policy may try it.
    "policies:rule-test": {"POST": on(POLICY_VIEW, POLICY_VIEW)},
    # GET without htmx leads back to the policy page; a replay is started by those who change or approve.
    "policies:policy-version-replay": {
        "GET": on(POLICY_VIEW, POLICY_VIEW, ok=REDIRECT),
        "POST": on(POLICY_VIEW, POLICY_CHANGE),
    },
    # --- connectors ----------------------------------------------------------------------------------------
    "connectors:connector-list": ANY_USER_GET,
    # A role, not a grant: there is no object yet (PRODUCT.md: integrators and admins connect systems).
    "connectors:connector-create": {"GET": page(CONNECTOR_CHANGE), "POST": page(CONNECTOR_CHANGE)},
    "connectors:connector-detail": {"GET": on(CONNECTOR_VIEW, CONNECTOR_VIEW)},
    "connectors:connector-edit": {
        "GET": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
        "POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
    },
    # Testing and browsing call the source with the stored credentials: use or change.
    "connectors:connector-test": {"POST": on(CONNECTOR_VIEW, CONNECTOR_USE)},
    "connectors:connector-browse": {"GET": on(CONNECTOR_VIEW, CONNECTOR_USE)},
    "connectors:connector-access": {"POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE)},
    "connectors:dataset-create": {
        "GET": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
        "POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
    },
    "connectors:dataset-detail": {
        "GET": on(CONNECTOR_VIEW, CONNECTOR_VIEW),
        "POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
    },
    "connectors:dataset-sync": {"POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE)},
    "connectors:dataset-upload": {"POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE)},
    "connectors:destination-create": {
        "GET": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
        "POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
    },
    "connectors:destination-detail": {
        "GET": on(CONNECTOR_VIEW, CONNECTOR_VIEW),
        "POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE),
    },
    # Everyone's own keys (a key acts with its user's rights, no more). Another user's key is not found, for the
    # admin too: the admin manages others' keys in Django's admin.
    "connectors:api-key-create": {"POST": page(LOGGED_IN)},
    "connectors:api-key-revoke": {"POST": on(LOGGED_IN, LOGGED_IN, admin_sees_all=False)},
    # --- alerts and monitoring -----------------------------------------------------------------------------
    "monitoring:alert-list": ANY_USER_GET,
    # An alert about the CRM connector: seen by who sees the connector, handled by who may change it.
    "monitoring:alert-acknowledge": {"POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE)},
    "monitoring:alert-resolve": {"POST": on(CONNECTOR_VIEW, CONNECTOR_CHANGE)},
    "monitor:overview": ANY_USER_GET,
    "monitor:rule-list": ANY_USER_GET,
    # The form offers only use cases the user may change: a rule on one they may not is an invalid choice.
    "monitor:rule-create": {
        "GET": page(LOGGED_IN),
        "POST": on(USE_CASE_VIEW, USE_CASE_CHANGE, ok=REDIRECT, refused=INVALID, hidden=INVALID),
    },
    # A rule on the churn use case: changed by who may change the use case.
    "monitor:rule-edit": {"GET": on(USE_CASE_VIEW, USE_CASE_CHANGE), "POST": on(USE_CASE_VIEW, USE_CASE_CHANGE)},
    # The upload names endpoints in the file; the service takes only those the user may change.
    "monitor:cost-list": {"GET": page(LOGGED_IN), "POST": page(LOGGED_IN)},
    # An import with a line on the churn model endpoint: seen by who sees the endpoint.
    "monitor:cost-detail": {"GET": on(CONNECTOR_VIEW, CONNECTOR_VIEW)},
    # --- ROI, audit, deliveries ------------------------------------------------------------------------------
    "reporting:roi": ANY_USER_GET,
    "reporting:roi-export": ANY_USER_GET,
    "audit:trail": ANY_USER_GET,
    "audit:trail-export": ANY_USER_GET,  # its parameter is the format, not an object
    "audit:trace": {"GET": on(USE_CASE_VIEW, USE_CASE_VIEW)},
    # The ledger check is the admin's; to anyone else the endpoint does not exist.
    "audit:verify": {"GET": page((ADMIN,), refused=NOT_FOUND)},
    "delivery:failed-list": ANY_USER_GET,
    "delivery:delivery-retry": {"POST": on(USE_CASE_VIEW, USE_CASE_RUN)},
    # --- widget ----------------------------------------------------------------------------------------------
    # The Embed panel: integrators issue links (run), editors name the web apps that may frame them (change).
    "widget:embed-panel": {
        "GET": on(USE_CASE_VIEW, (*USE_CASE_RUN, *USE_CASE_CHANGE)),
        "POST": on(USE_CASE_VIEW, USE_CASE_RUN),
    },
    "widget:embed-origins": {"POST": on(USE_CASE_VIEW, USE_CASE_CHANGE)},
    # The signed link is the credential, whoever holds it (the business user has no Doorstep account); a
    # forged link is refused with 403.
    "widget:show": {
        method: on(EVERYONE, EVERYONE, by_grant=False, hidden=FORBIDDEN, columns=("own", "other", "none"))
        for method in ("GET", "POST")
    },
    # --- governance packs and checklists ----------------------------------------------------------------------
    "governance:pack-list": ANY_USER_GET,
    # Loading a shipped pack is for governance officers and admins (a role); a pack is not a granted object.
    "governance:pack-load": {
        "POST": on(PACK_LOADERS, PACK_LOADERS, gate=frozenset(PACK_LOADERS), by_grant=False, columns=("own", "none"))
    },
    "governance:use-case-checklist": {"GET": on(USE_CASE_VIEW, USE_CASE_VIEW)},
    "governance:use-case-checklist-apply": {"POST": on(USE_CASE_VIEW, USE_CASE_CHANGE)},
    "governance:use-case-control-item-set": {"POST": on(USE_CASE_VIEW, USE_CASE_CHANGE)},
}

COLUMNS = ("own", "other", "none")
MIXED = "mixed"
NO_OBJECT = "-"


def columns(op: Op, *, nested: bool) -> tuple[str, ...]:
    if op.see is None:
        return (NO_OBJECT,)
    if op.columns is not None:
        return op.columns
    return (*COLUMNS, MIXED) if nested else COLUMNS


def expected(op: Op, method: str, role: str, column: str, *, api: bool) -> Expect | None:
    """The answer `role` must get from `method` of `op` on the object of `column`; None when the pair does not
    apply (an API key outside the API)."""
    ok = op.ok or (SHOWN if method == "GET" else PROCESSED)
    if role in KEY_SCOPES:
        if not api or op.scope is None:
            return None
        scopes = KEY_SCOPES[role]
        if scopes and op.scope not in scopes:
            return FORBIDDEN  # the key's scopes are checked before anything else
        role = INTEGRATOR  # a key acts with its user's rights
    if role == ANONYMOUS and ANONYMOUS not in op.allow:
        return UNAUTHENTICATED if api else LOGIN
    if op.gate is not None and role not in op.gate:
        return op.refused
    if op.see is None:
        return ok if role in op.allow else op.refused
    if column in ("none", MIXED):
        return op.hidden
    if column == "other" and op.by_grant and not (role == ADMIN and op.admin_sees_all):
        return op.hidden
    if role not in op.see:
        return op.hidden
    return ok if role in op.allow else op.refused


# --- the objects ------------------------------------------------------------------------------------------------

GUESSED_ID = 999999
GUESSED_SLUG = "no-such-thing"
GUESSED_UUID = uuid.UUID("00000000-0000-4000-8000-000000999999")


def _guess() -> SimpleNamespace:
    return SimpleNamespace(pk=GUESSED_ID, slug=GUESSED_SLUG, public_id=GUESSED_UUID)


def guessed_side() -> SimpleNamespace:
    """Stand-ins for objects that do not exist: every id and slug a guess."""
    names = (
        "use_case queue policy version connector model dataset destination recommendation delivered task run "
        "approval delivery alert alert_rule cost_import checklist_item api_key pack"
    ).split()
    side = SimpleNamespace(**{name: _guess() for name in names})
    side.pack_slug = GUESSED_SLUG
    side.widget_link = GUESSED_SLUG
    side.widget_form_token = GUESSED_SLUG
    return side


# The kwargs of every URL that names an object, from a side (own, other, guessed).
URL_KWARGS: dict[str, Callable[[SimpleNamespace], dict]] = {
    "api-approval-detail": lambda s: {"public_id": s.approval.public_id},
    "api-recommendation-detail": lambda s: {"pk": s.recommendation.pk},
    "api-recommendation-trace": lambda s: {"pk": s.recommendation.pk},
    "api-run-detail": lambda s: {"pk": s.run.pk},
    "api-review-task-detail": lambda s: {"pk": s.task.pk},
    "api-review-task-decision": lambda s: {"pk": s.task.pk},
    "api-use-case-transitions": lambda s: {"slug": s.use_case.slug},
    "api-policy-detail": lambda s: {"pk": s.policy.pk},
    "api-policy-version-detail": lambda s: {"pk": s.policy.pk, "version_pk": s.version.pk},
    "api-policy-version-review": lambda s: {"pk": s.policy.pk, "version_pk": s.version.pk},
    "api-delivery-retry": lambda s: {"pk": s.delivery.pk},
    "api-widget-token-create": lambda s: {"slug": s.use_case.slug},
    "reviews:queue-detail": lambda s: {"pk": s.queue.pk},
    "reviews:claim-next": lambda s: {"pk": s.queue.pk},
    "reviews:queue-bulk-decide": lambda s: {"pk": s.queue.pk},
    "reviews:task-detail": lambda s: {"pk": s.task.pk},
    "reviews:task-decide": lambda s: {"pk": s.task.pk},
    "reviews:task-similar": lambda s: {"pk": s.task.pk},
    "reviews:task-renew": lambda s: {"pk": s.task.pk},
    "reviews:task-take-over": lambda s: {"pk": s.task.pk},
    "workflows:use-case-detail": lambda s: {"slug": s.use_case.slug},
    "workflows:use-case-transition": lambda s: {"slug": s.use_case.slug},
    "workflows:use-case-sampling": lambda s: {"slug": s.use_case.slug},
    "workflows:use-case-settings": lambda s: {"slug": s.use_case.slug},
    "policies:policy-detail": lambda s: {"pk": s.policy.pk},
    "policies:policy-requirements": lambda s: {"pk": s.policy.pk},
    "policies:policy-version-new": lambda s: {"pk": s.policy.pk},
    "policies:rule-test": lambda s: {"pk": s.policy.pk},
    **{
        f"policies:policy-version-{action}": lambda s: {"pk": s.policy.pk, "version_pk": s.version.pk}
        for action in ("detail", "diff", "review", "submit", "activate", "schedule", "emergency", "replay")
    },
    **{
        f"connectors:connector-{action}": lambda s: {"pk": s.connector.pk}
        for action in ("detail", "edit", "test", "browse", "access")
    },
    "connectors:dataset-create": lambda s: {"pk": s.connector.pk},
    **{
        f"connectors:dataset-{action}": lambda s: {"pk": s.connector.pk, "dataset_pk": s.dataset.pk}
        for action in ("detail", "sync", "upload")
    },
    "connectors:destination-create": lambda s: {"pk": s.connector.pk},
    "connectors:destination-detail": lambda s: {"pk": s.connector.pk, "destination_pk": s.destination.pk},
    "connectors:api-key-revoke": lambda s: {"pk": s.api_key.pk},
    "monitoring:alert-acknowledge": lambda s: {"pk": s.alert.pk},
    "monitoring:alert-resolve": lambda s: {"pk": s.alert.pk},
    "monitor:rule-edit": lambda s: {"pk": s.alert_rule.pk},
    "monitor:cost-detail": lambda s: {"pk": s.cost_import.pk},
    "audit:trace": lambda s: {"pk": s.recommendation.pk},
    "delivery:delivery-retry": lambda s: {"pk": s.delivery.pk},
    "widget:embed-panel": lambda s: {"slug": s.use_case.slug},
    "widget:embed-origins": lambda s: {"slug": s.use_case.slug},
    "widget:show": lambda s: {"token": s.widget_link},
    "governance:pack-load": lambda s: {"slug": s.pack_slug},
    "governance:use-case-checklist": lambda s: {"slug": s.use_case.slug},
    "governance:use-case-checklist-apply": lambda s: {"slug": s.use_case.slug},
    "governance:use-case-control-item-set": lambda s: {"slug": s.use_case.slug, "pk": s.checklist_item.pk},
}
# A URL parameter that names no object: the export's format.
FIXED_KWARGS = {"audit:trail-export": {"format": "csv"}}


def _now_iso() -> str:
    return clock.now().isoformat()


def _recommendation_in(s) -> dict:
    return {"use_case": s.use_case.slug, "subject": "ACC-0002", "content": {"text": "Call the sponsor."}}


def _alert_rule_in(s) -> dict:
    return {
        "name": "Errors",
        "use_case": s.use_case.pk,
        "signal": "error_rate",
        "condition": "above",
        "threshold": "5",
        "window": "24h",
        "min_samples": "1",
        "severity": "warning",
        "reason": "Permission matrix",
    }


# POST bodies that pass the forms and serializers, so that the answer is the permission's, not the form's (a view
# that validates before it checks would otherwise answer a refused caller with the form's errors). JSON for the API,
# form fields for pages.
BODIES: dict[str, Callable[[SimpleNamespace], dict]] = {
    "api-use-case-transitions": lambda s: {"to": "paused", "reason": "Permission matrix"},
    "api-recommendation-list": _recommendation_in,
    "api-recommendation-batch": lambda s: {"items": [_recommendation_in(s)]},
    "api-run-list": lambda s: {"use_case": s.use_case.slug, "subject": "ACC-0001"},
    "api-review-task-decision": lambda s: {"decision": "approve"},
    "api-approval-list": lambda s: {
        "use_case": s.use_case.slug,
        "subject": "ACC-0001",
        "action": {"type": "crm_task", "discount_pct": 5},
        "summary": "Offer a 5% renewal discount.",
    },
    "api-feedback": lambda s: {
        "events": [{"event_id": f"matrix-{uuid.uuid4().hex}", "recommendation_id": s.delivered.pk, "type": "accepted"}]
    },
    "api-widget-token-create": lambda s: {"subject": "ACC-0001"},
    "api-outcomes": lambda s: {
        "outcomes": [
            {
                "event_id": f"matrix-{uuid.uuid4().hex}",
                "use_case": s.use_case.slug,
                "subject": "ACC-0001",
                "kind": "renewal_won",
                "occurred_at": _now_iso(),
            }
        ]
    },
    "api-policy-version-review": lambda s: {"decision": "approve", "comment": "Permission matrix"},
    "login": lambda s: {"username": "nobody", "password": "wrong"},
    "reviews:task-decide": lambda s: {"decision": "approve", "comment": "Permission matrix"},
    "reviews:task-take-over": lambda s: {"reason": "Permission matrix"},
    "workflows:use-case-transition": lambda s: {"to": "paused", "reason": "Permission matrix"},
    "workflows:use-case-sampling": lambda s: {"percent": "10", "reason": "Permission matrix"},
    "policies:policy-version-review": lambda s: {"decision": "approve", "comment": "Permission matrix"},
    "policies:policy-version-emergency": lambda s: {"reason": "Permission matrix", "hours": "4"},
    "policies:policy-version-replay": lambda s: {"days": "30"},
    "policies:rule-test": lambda s: {
        "version": s.version.pk,
        "sample": json.dumps({"output": {"text": "Hello"}, "confidence": 0.9}),
    },
    "connectors:api-key-create": lambda s: {"name": f"matrix {uuid.uuid4().hex[:8]}"},
    "monitor:rule-create": _alert_rule_in,
    "monitor:rule-edit": _alert_rule_in,
    "governance:use-case-checklist-apply": lambda s: {"pack": s.pack.pk},
    "governance:use-case-control-item-set": lambda s: {"status": "met", "note": "Permission matrix"},
    "widget:show": lambda s: {"form_token": s.widget_form_token, "action": "accept"},
    "widget:embed-panel": lambda s: {"subject": "ACC-0001", "ttl_minutes": "30"},
    "widget:embed-origins": lambda s: {"embed_origins": "https://crm.example.com"},
}


def _draft(side, subject: str, confidence: float) -> Draft:
    return Draft(
        subject_key=subject,
        content={"text": f"{side.text_prefix}Offer a 5% renewal discount and call the sponsor."},
        confidence=confidence,
        proposed_action={"type": "crm_task", "discount_pct": 5},
        context={"subject": "Renewal"},
    )


def _side_objects(world, side: SimpleNamespace, *, actor_user, officer) -> SimpleNamespace:
    """What every side holds beyond its use case's own settings: outputs (one queued for review, one passed),
    a run, an agent's approval, a failed delivery, an alert, an alert rule, a cost import, a checklist item and
    a widget link. `officer` may change the use case (applies the checklist)."""
    from apps.governance.models import ControlPack, UseCaseControlItem
    from apps.governance.services import use_case_checklist_apply
    from apps.monitoring.models import AlertRule, CostImport
    from apps.monitoring.services import alert_raise
    from apps.reviews.models import ApprovalRequest
    from apps.widget.services import widget_token_issue
    from apps.widget.tokens import form_token_make

    actor = Actor(user=actor_user)
    (side.recommendation,) = recommendation_submit(
        actor=actor, use_case=side.use_case, drafts=[_draft(side, "ACC-0001", confidence=0.4)]
    )
    assert side.recommendation.status == "queued_for_review", side.recommendation.status
    side.task = side.recommendation.review_task
    (side.delivered,) = recommendation_submit(
        actor=actor, use_case=side.use_case, drafts=[_draft(side, "ACC-0001", confidence=0.95)]
    )
    assert side.delivered.status in ("approved", "delivering", "delivered"), side.delivered.status
    side.run = Run.objects.create(use_case=side.use_case, subject_key="ACC-0001", trigger="api")
    side.approval = ApprovalRequest.objects.create(
        recommendation=side.recommendation,
        use_case=side.use_case,
        requested_by=actor_user,
        timeout_at=clock.now() + dt.timedelta(hours=1),
    )
    side.delivery = side.recommendation.deliveries.create(destination=side.destination, status="failed")
    side.alert = alert_raise(
        key=f"matrix-{side.connector.pk}", kind="test", title=f"{side.text_prefix}Sync failed", connector=side.connector
    )
    side.alert_rule = AlertRule.objects.create(
        name=f"{side.text_prefix}Errors", use_case=side.use_case, signal="error_rate", threshold=5
    )
    side.cost_import = CostImport.objects.create(
        file_name="usage.csv", file_sha256=uuid.uuid4().hex * 2, uploaded_by=world.admin
    )
    side.cost_import.lines.create(day=dt.date(2026, 1, 1), connector=side.model, provider_cost=1, estimated_cost=1)
    side.pack = ControlPack.objects.get(slug=side.pack_slug)
    use_case_checklist_apply(actor=Actor(user=officer), use_case=side.use_case, pack=side.pack)
    side.checklist_item = UseCaseControlItem.objects.filter(use_case=side.use_case).first()
    link = widget_token_issue(actor=actor, use_case=side.use_case, subject_key="ACC-0001", ttl=dt.timedelta(minutes=30))
    side.widget_link = link.url.rstrip("/").rsplit("/", 1)[-1]
    side.widget_form_token = form_token_make(widget_token_id=link.widget_token.pk, recommendation_id=side.delivered.pk)
    return side


PACK = "eu-ai-act-high-risk"
# In the name of every object of the other side (and its outputs' text): no page or answer to a role without a
# grant on it may contain this word.
OTHER_MARKER = "Legalis"
# Public by contract and labelled by use case for the operators' scraper, which carries no login (PRODUCT.md:
# "GET /metrics → Prometheus text format"); keep it off the public network.
SHOWS_EVERY_USE_CASE = {"metrics"}


def own_side(world) -> SimpleNamespace:
    """The churn side of the world, which the demo's grants cover (the support policy's version in review stands
    for "a policy version": both policies are granted alike)."""
    from apps.governance.services import control_pack_load

    control_pack_load(actor=Actor(user=world.governance), slug=PACK)
    side = SimpleNamespace(
        use_case=world.churn,
        queue=world.churn_queue,
        policy=world.replies_policy,
        version=world.pending_version,
        connector=world.crm_connector,
        model=world.churn_model,
        dataset=world.accounts,
        destination=world.crm_tasks,
        pack_slug=PACK,
        text_prefix="",
    )
    side.api_key, _ = api_key_create(actor=Actor(user=world.integrator), user=world.integrator, name="integration")
    return _side_objects(world, side, actor_user=world.integrator, officer=world.governance)


def other_side(world) -> SimpleNamespace:
    """A use case of another business unit (Legal) with its own connector, model endpoint, queue and policy. Its
    grants go to its own officers and reviewers, none of them a role of the matrix; the admin is a superuser."""
    admin = world.admin
    officers = Group.objects.create(name="Legal officers")
    # Not named after the marker: usernames are no governed object (the use-case owner picker lists every user).
    officer = UserFactory(username="contracts-officer")
    officer.groups.add(officers)

    def save(obj):
        obj._history_user = admin
        obj.save()
        return obj

    connector = Connector(name="Legalis contracts database", kind=Connector.Kind.SQL)
    connector.set_secrets({"url": f"sqlite:///{world.source_db}"})
    save(connector)
    model = save(
        Connector(
            name="Legalis renewal model",
            kind=Connector.Kind.MODEL_SKLEARN,
            config={"artifact": str(world.demo_dir / "churn.joblib"), "cost_per_call": "0.0004"},
        )
    )
    dataset = save(
        SourceDataset(
            connector=connector,
            name="Legalis contracts",
            table="accounts",
            key_field="account_id",
            updated_at_field="updated_at",
            freshness_sla=dt.timedelta(hours=24),
        )
    )
    destination = save(
        Destination(
            name="Legalis contract notes",
            kind=Destination.Kind.WRITEBACK,
            connector=connector,
            table="crm_tasks",
            config={"subject_column": "account_id", "text_column": "body", "title_column": "subject"},
        )
    )
    queue = save(ReviewQueue(name="Legalis contracts review", sla=dt.timedelta(hours=4)))
    policy = save(Policy(name="Legalis contracts policy", business_unit=f"{OTHER_MARKER} legal"))
    use_case = UseCase(
        slug="legalis-renewals",
        name="Legalis contract renewals",
        business_unit=f"{OTHER_MARKER} legal",
        owner=officer,
        risk_tier=UseCase.RiskTier.LIMITED,
        status=UseCase.Status.PRODUCTION,
        review_sample_rate=Decimal("0"),
        source_dataset=dataset,
        model_endpoint=model,
        policy=policy,
        review_queue=queue,
    )
    save(use_case)
    use_case.destinations.add(destination)
    grants = (
        (use_case, ("view_usecase", "change_usecase", "run_usecase")),
        (policy, ("view_policy", "change_policy", "approve_policy")),
        (queue, ("view_reviewqueue", "review_reviewqueue")),
        *((c, ("view_connector", "use_connector", "change_connector")) for c in (connector, model)),
    )
    for obj, codenames in grants:
        for codename in codenames:
            object_permission_grant(group=officers, codename=codename, obj=obj)
    # v1 written by the admin and approved by a Legal officer (maker-checker), active; v2 waiting in review.
    version = policy_version_create(actor=Actor(user=admin), policy=policy, rules=CHURN_RULES, note="First rules")
    policy_version_submit(actor=Actor(user=admin), version=version)
    policy_version_review(actor=Actor(user=officer), version=version, decision="approve", comment="Fine.")
    policy_version_activate(actor=Actor(user=admin), version=version)
    pending = policy_version_create(actor=Actor(user=admin), policy=policy, rules=CHURN_RULES[:2], note="Fewer rules")
    policy_version_submit(actor=Actor(user=admin), version=pending)
    side = SimpleNamespace(
        use_case=use_case,
        queue=queue,
        policy=policy,
        version=pending,
        connector=connector,
        model=model,
        dataset=dataset,
        destination=destination,
        pack_slug=PACK,
        text_prefix=f"{OTHER_MARKER}: ",
    )
    side.api_key, _ = api_key_create(actor=Actor(user=officer), user=officer, name="legal")
    return _side_objects(world, side, actor_user=admin, officer=officer)
