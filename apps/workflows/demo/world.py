"""The demo company as Doorstep sees it: users and roles, grants, connectors, policies, queues and
two use cases ("churn risk on CRM accounts", "suggested replies on support tickets").

Built through the same services the product uses; tests build it too, so they exercise real objects.
"""

import datetime as dt
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.connectors.clients.local_models import build_reply_index, train_churn_model
from apps.connectors.models import Connector, Destination, SourceDataset
from apps.core.actors import Actor
from apps.permissions import roles
from apps.permissions.services import object_permission_grant
from apps.policies.models import ApprovalRequirement, Policy
from apps.policies.services import (
    policy_version_activate,
    policy_version_create,
    policy_version_review,
    policy_version_submit,
)
from apps.reviews.models import ReviewQueue
from apps.workflows.models import UseCase

from .sources import CHURN_FEATURES, build_source_database

CHURN_RULES = [
    {
        "name": "Low confidence",
        "condition": "signals.confidence < 0.7",
        "effect": "review",
        "description": "The model is unsure: a person decides.",
    },
    {
        "name": "Large discount",
        "condition": "has(action.discount_pct) && action.discount_pct > 15",
        "effect": "review",
        "description": "Discounts above 15% need a human sign-off.",
    },
    {
        "name": "Stale account data",
        "condition": 'signals.freshness == "stale"',
        "effect": "review",
        "description": "The CRM record is older than its freshness SLA.",
    },
    {
        "name": "E-mail address in text",
        "condition": '"email" in signals.pii_kinds',
        "effect": "redact",
        "description": "Personal e-mail addresses never leave in a recommendation.",
    },
]
REPLY_RULES = [
    {
        "name": "Refund promise",
        "condition": 'output.text.matches("(?i)\\\\brefund")',
        "effect": "review",
        "description": "Only a person may promise money back.",
    },
    {
        "name": "Weak match",
        "condition": "signals.confidence < 0.15",
        "effect": "review",
        "description": "The knowledge base has no close answer.",
    },
    {
        "name": "Privacy request",
        "condition": 'context.subject.matches("(?i)gdpr|delete my data|erasure")',
        "effect": "block",
        "description": "Data-subject requests go to the privacy team, not an AI reply.",
    },
    {
        "name": "Contact details in reply",
        "condition": "signals.pii_count > 0",
        "effect": "redact",
        "description": "Customer contact details are removed from replies.",
    },
]

CODENAMES = {
    "usecase": ("view_usecase", "change_usecase", "run_usecase"),
    "policy": ("view_policy", "change_policy", "approve_policy"),
    "connector": ("view_connector", "change_connector", "use_connector"),
    "queue": ("view_reviewqueue", "review_reviewqueue"),
}


def _user(username: str, password: str, *groups: Group, superuser: bool = False, **fields):
    user = get_user_model().objects.create_user(
        username=username, password=password, is_superuser=superuser, is_staff=superuser, **fields
    )
    user.groups.add(*groups)
    return user


def build_demo_artifacts(demo_dir: Path, *, now: dt.datetime) -> None:
    """The outside systems: the CRM/helpdesk database and the models trained on it."""
    demo_dir.mkdir(parents=True, exist_ok=True)
    source_db = demo_dir / "sources.sqlite3"
    build_source_database(source_db, now=now)
    train_churn_model(source_db, demo_dir / "churn.joblib", features=CHURN_FEATURES, now=now)
    # The fallback is a smaller model on behaviour signals only: different code path, same question.
    train_churn_model(
        source_db, demo_dir / "churn-fallback.joblib", features=("logins_30d", "nps", "late_payments_12m"), now=now
    )
    build_reply_index(source_db, demo_dir / "replies.joblib")


def build_world(*, demo_dir: Path, password: str, now: dt.datetime, artifacts_ready: bool = False) -> SimpleNamespace:
    """Everything in Doorstep's own database; `artifacts_ready` when demo_dir already holds the outside systems."""
    if not artifacts_ready:
        build_demo_artifacts(demo_dir, now=now)
    source_db = demo_dir / "sources.sqlite3"
    w = SimpleNamespace(password=password, demo_dir=demo_dir, source_db=source_db)
    group = {name: Group.objects.get_or_create(name=name)[0] for name in roles.ALL}
    w.churn_reviewers = Group.objects.create(name="Churn reviewers")
    w.support_reviewers = Group.objects.create(name="Support reviewers")
    w.admin = _user("admin", password, group[roles.ADMIN], superuser=True, first_name="Ada", last_name="Admin")
    w.governance = _user("governance", password, group[roles.GOVERNANCE], first_name="Grace", last_name="Officer")
    w.reviewer = _user(
        "reviewer", password, group[roles.REVIEWER], w.churn_reviewers, first_name="Rui", last_name="Reviewer"
    )
    w.executive = _user("executive", password, group[roles.EXECUTIVE], first_name="Eve", last_name="Executive")
    w.integrator = _user("integrator", password, group[roles.INTEGRATOR], first_name="Ian", last_name="Integrator")
    w.support_lead = _user(
        "support-lead", password, group[roles.REVIEWER], w.support_reviewers, first_name="Sam", last_name="Lead"
    )
    admin = Actor(user=w.admin)

    def save(obj):
        obj._history_user = w.admin
        obj.save()
        return obj

    w.crm_connector = Connector(
        name="Northwind CRM & helpdesk",
        kind=Connector.Kind.SQL,
        description="The company's CRM and helpdesk database (demo copy).",
    )
    w.crm_connector.set_secrets({"url": f"sqlite:///{source_db}"})
    save(w.crm_connector)
    w.churn_model = save(
        Connector(
            name="Churn classifier v3",
            kind=Connector.Kind.MODEL_SKLEARN,
            config={"artifact": str(demo_dir / "churn.joblib"), "cost_per_call": "0.0004"},
        )
    )
    w.churn_fallback = save(
        Connector(
            name="Churn classifier (behaviour only)",
            kind=Connector.Kind.MODEL_SKLEARN,
            config={"artifact": str(demo_dir / "churn-fallback.joblib"), "cost_per_call": "0.0001"},
        )
    )
    w.reply_model = save(
        Connector(
            name="Support reply retriever",
            kind=Connector.Kind.MODEL_RETRIEVAL,
            config={"artifact": str(demo_dir / "replies.joblib"), "price_per_1k_tokens": "0.002"},
        )
    )
    w.accounts = save(
        SourceDataset(
            connector=w.crm_connector,
            name="Accounts",
            table="accounts",
            key_field="account_id",
            updated_at_field="updated_at",
            freshness_sla=dt.timedelta(hours=24),
            quality_rules={"required": ["arr", "nps"]},
        )
    )
    w.tickets = save(
        SourceDataset(
            connector=w.crm_connector,
            name="Tickets",
            table="tickets",
            key_field="ticket_id",
            updated_at_field="updated_at",
            freshness_sla=None,
            quality_rules={"required": ["subject", "body"]},
        )
    )
    w.crm_tasks = save(
        Destination(
            name="CRM tasks on the account",
            kind=Destination.Kind.WRITEBACK,
            connector=w.crm_connector,
            table="crm_tasks",
            config={"subject_column": "account_id", "text_column": "body", "title_column": "subject"},
        )
    )
    w.ticket_notes = save(
        Destination(
            name="Internal note on the ticket",
            kind=Destination.Kind.WRITEBACK,
            connector=w.crm_connector,
            table="ticket_notes",
            config={"subject_column": "ticket_id", "text_column": "body"},
        )
    )
    w.churn_queue = save(
        ReviewQueue(
            name="Churn review", description="Retention offers and low-confidence scores", sla=dt.timedelta(hours=4)
        )
    )
    w.replies_queue = save(
        ReviewQueue(name="Support replies review", description="Replies that promise money", sla=dt.timedelta(hours=2))
    )
    w.churn_policy = save(
        Policy(
            name="Churn retention policy",
            business_unit="Sales",
            description="When a churn recommendation may reach the CRM on its own.",
        )
    )
    w.replies_policy = save(
        Policy(
            name="Support reply policy",
            business_unit="Support",
            description="What suggested replies may say to customers.",
        )
    )
    for policy in (w.churn_policy, w.replies_policy):
        save(ApprovalRequirement(policy=policy, group=group[roles.GOVERNANCE], count=1))
    w.churn = UseCase(
        slug="churn-risk",
        name="Churn risk on CRM accounts",
        business_unit="Sales",
        purpose="Flag accounts likely to churn and propose a retention step to the account owner.",
        owner=w.governance,
        risk_tier=UseCase.RiskTier.LIMITED,
        status=UseCase.Status.PRODUCTION,
        risk_reason="Advises staff; no automated decision about people.",
        # No risk-tier sampling in the demo: its figures and the tests built on it count on every allowed
        # output being delivered. The page shows the override beside the tier's default (20 %).
        review_sample_rate=Decimal("0"),
        source_dataset=w.accounts,
        model_endpoint=w.churn_model,
        fallback_endpoint=w.churn_fallback,
        policy=w.churn_policy,
        review_queue=w.churn_queue,
        manual_minutes_per_item=25,
        hourly_cost=70,
        value_per_accepted=120,
    )
    save(w.churn)
    w.churn.destinations.add(w.crm_tasks)
    w.replies = UseCase(
        slug="support-replies",
        name="Suggested replies on support tickets",
        business_unit="Customer support",
        owner=w.governance,
        risk_tier=UseCase.RiskTier.LIMITED,
        purpose="Draft a reply from the knowledge base as an internal note on the ticket.",
        status=UseCase.Status.PILOT,
        risk_reason="Customer-facing text, reviewed before sending.",
        # No risk-tier sampling in the demo: its figures and the tests built on it count on every allowed
        # output being delivered. The page shows the override beside the tier's default (20 %).
        review_sample_rate=Decimal("0"),
        source_dataset=w.tickets,
        model_endpoint=w.reply_model,
        policy=w.replies_policy,
        review_queue=w.replies_queue,
        manual_minutes_per_item=12,
        hourly_cost=45,
        value_per_accepted=8,
    )
    save(w.replies)
    w.replies.destinations.add(w.ticket_notes)

    # Grants: what each role may do, object by object.
    governance, executive, integrator = group[roles.GOVERNANCE], group[roles.EXECUTIVE], group[roles.INTEGRATOR]
    for use_case in (w.churn, w.replies):
        for codename in ("view_usecase", "change_usecase"):
            object_permission_grant(group=governance, codename=codename, obj=use_case)
        object_permission_grant(group=executive, codename="view_usecase", obj=use_case)
        for codename in ("view_usecase", "run_usecase"):
            object_permission_grant(group=integrator, codename=codename, obj=use_case)
    for policy in (w.churn_policy, w.replies_policy):
        for codename in CODENAMES["policy"]:
            object_permission_grant(group=governance, codename=codename, obj=policy)
        object_permission_grant(group=executive, codename="view_policy", obj=policy)
    for connector in (w.crm_connector, w.churn_model, w.churn_fallback, w.reply_model):
        for codename in CODENAMES["connector"]:
            object_permission_grant(group=integrator, codename=codename, obj=connector)
        for codename in ("view_connector", "use_connector"):  # officers wire connectors into use cases
            object_permission_grant(group=governance, codename=codename, obj=connector)
    for queue, team, use_case in (
        (w.churn_queue, w.churn_reviewers, w.churn),
        (w.replies_queue, w.support_reviewers, w.replies),
    ):
        for codename in CODENAMES["queue"]:
            object_permission_grant(group=team, codename=codename, obj=queue)
        object_permission_grant(group=team, codename="view_usecase", obj=use_case)
        object_permission_grant(group=governance, codename="view_reviewqueue", obj=queue)

    # Policies: v1 written by the admin, approved by governance (maker-checker), active.
    for policy, rules in ((w.churn_policy, CHURN_RULES), (w.replies_policy, REPLY_RULES)):
        version = policy_version_create(actor=admin, policy=policy, rules=rules, note="First production rules")
        policy_version_submit(actor=admin, version=version)
        policy_version_review(
            actor=Actor(user=w.governance),
            version=version,
            decision="approve",
            comment="Matches the use-case risk assessment.",
        )
        policy_version_activate(actor=admin, version=version)
    # A change waiting for the governance officer's approval.
    tightened = [*REPLY_RULES[:1], {**REPLY_RULES[1], "condition": "signals.confidence < 0.25"}, *REPLY_RULES[2:]]
    w.pending_version = policy_version_create(
        actor=admin,
        policy=w.replies_policy,
        rules=tightened,
        note="Review more weak matches after October's complaints",
    )
    policy_version_submit(actor=admin, version=w.pending_version)
    return w
