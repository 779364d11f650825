import weakref
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import BooleanField, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL

from apps.core import clock
from apps.core.permissions import key_use_cases, restrict

from .models import (
    ReviewQueue,
    ReviewQueueGroupObjectPermission,
    ReviewQueueUserObjectPermission,
    ReviewTask,
    ReviewVerdict,
)

# Queue counters stop counting here: the page says "1,000+" rather than counting a million rows (PITFALLS #4).
COUNT_CAP = 1_000
PENDING_STATUSES = (ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED)


def _pending_count(extra_where: str = "", params=()) -> RawSQL:
    """The queue's pending tasks (matching `extra_where`), counted up to COUNT_CAP + 1 along the pending
    partial indexes."""
    tasks, queues = ReviewTask._meta.db_table, ReviewQueue._meta.db_table
    return RawSQL(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {tasks} t WHERE t.queue_id = {queues}.id "
        f"AND t.status IN (%s, %s){extra_where} LIMIT {COUNT_CAP + 1}) capped",
        [*PENDING_STATUSES, *params],
    )


def queue_list(*, user) -> QuerySet[ReviewQueue]:
    """Queues the user may review, with pending and overdue counts (capped at COUNT_CAP + 1) and the oldest
    pending item's arrival."""
    oldest = ReviewTask.objects.filter(queue=OuterRef("pk"), status__in=PENDING_STATUSES).order_by("created_at")
    return restrict(ReviewQueue.objects.all(), user, "review_reviewqueue").annotate(
        pending_count=_pending_count(),
        overdue_count=_pending_count(" AND t.due_at < %s", [clock.now()]),
        oldest_pending=Subquery(oldest.values("created_at")[:1]),
    )


def task_list(*, user, queue: ReviewQueue | None = None, status: str | None = None) -> QuerySet[ReviewTask]:
    queues = restrict(ReviewQueue.objects.all(), user, "review_reviewqueue")
    tasks = ReviewTask.objects.filter(queue__in=queues).select_related(
        "queue", "claimed_by", "recommendation__use_case"
    )
    if queue is not None:
        tasks = tasks.filter(queue=queue)
    if (limited_to := key_use_cases(user)) is not None:
        tasks = tasks.filter(recommendation__use_case_id__in=limited_to)
    if status == "pending":
        tasks = tasks.filter(status__in=[ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED])
    elif status:
        tasks = tasks.filter(status=status)
    return tasks.order_by("-priority", "created_at", "pk")


def task_get(*, user, pk: int) -> ReviewTask:
    """One task the user may review; ReviewTask.DoesNotExist otherwise (a guessed id finds nothing)."""
    return (
        task_list(user=user)
        .select_related(
            "recommendation__run", "recommendation__policy_decision", "recommendation__policy_version__policy"
        )
        .get(pk=pk)
    )


def claimable(now: datetime, *, user=None, lead: bool = False) -> Q:
    """Tasks nobody holds: open, or claimed with an expired lease; for a lead of the queue also escalated and
    adjudication items nobody holds (and, given `user`, their own claims)."""
    condition = Q(status=ReviewTask.Status.OPEN) | Q(status=ReviewTask.Status.CLAIMED, lease_expires_at__lt=now)
    if lead:
        condition |= lead_claimable(now)
    if user is not None:
        condition |= Q(status__in=held_statuses(lead=lead), claimed_by=user)
    return condition


def lead_claimable(now: datetime) -> Q:
    """Escalated and adjudication items nobody holds. A lead's claim keeps their status (so only a lead can
    take them again when the lease runs out); the claim is only the holder and the lease."""
    return Q(status__in=ReviewTask.LEAD_STATUSES) & (Q(claimed_by__isnull=True) | Q(lease_expires_at__lt=now))


def held_statuses(*, lead: bool) -> tuple[str, ...]:
    """The statuses in which a task can be held by someone: claimed, and for leads the lead statuses."""
    return (ReviewTask.Status.CLAIMED, *ReviewTask.LEAD_STATUSES) if lead else (ReviewTask.Status.CLAIMED,)


class PreparedQuery:
    """A statement PostgreSQL plans once per database session (PREPARE, then EXECUTE): planning a query on the
    task table (ten indexes, five of them partial) costs several times running it, and claim-next runs on every
    "next" click. A plain query elsewhere, and where the database sets DISABLE_SERVER_SIDE_CURSORS (Django's
    switch for a pooler in transaction mode, where a session's prepared statements are not there next time).
    `sql` names its parameters %(name)s; `params` orders them."""

    _sessions: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()

    def __init__(self, name: str, sql: str, params: tuple[str, ...]):
        self.name, self.sql, self.params = name, sql, params
        self._prepare = f"PREPARE {name} AS " + sql % {param: f"${i}" for i, param in enumerate(params, 1)}
        self._execute = f"EXECUTE {name}({', '.join(['%s'] * len(params))})"

    def execute(self, cursor, values: dict) -> None:
        if connection.vendor != "postgresql" or connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
            cursor.execute(self.sql, values)
            return
        prepared = self._sessions.setdefault(connection.connection, set())  # a new session prepares anew
        if self.name not in prepared:
            cursor.execute(self._prepare)
            prepared.add(self.name)
        cursor.execute(self._execute, [values[param] for param in self.params])


class ClaimStanding(NamedTuple):
    reviews: bool  # review_reviewqueue on the queue
    leads: bool  # lead_reviewqueue on the queue
    own_claim_id: int | None  # the user's first live claim in the queue, in queue order


def _claim_standing_sql() -> str:
    """The grants (the rule of apps.core.permissions.has_object_permission: held by the user or one of their
    groups, or a superuser) and the own live claim, whose lead items count only for a lead. Portable SQL."""
    groups, users = ReviewQueueGroupObjectPermission._meta.db_table, ReviewQueueUserObjectPermission._meta.db_table
    membership = get_user_model().groups.through._meta.db_table
    tasks = ReviewTask._meta.db_table
    claimed, escalated, adjudication = (
        ReviewTask.Status.CLAIMED,
        ReviewTask.Status.ESCALATED,
        ReviewTask.Status.ADJUDICATION,
    )
    return (
        "WITH grants AS (SELECT "
        "COALESCE(MAX(CASE WHEN p.codename = 'review_reviewqueue' THEN 1 END), 0) AS reviews, "
        "COALESCE(MAX(CASE WHEN p.codename = 'lead_reviewqueue' THEN 1 END), 0) AS leads "
        "FROM auth_permission p WHERE p.codename IN ('review_reviewqueue', 'lead_reviewqueue') AND (%(superuser)s "
        f"OR p.id IN (SELECT g.permission_id FROM {groups} g JOIN {membership} m ON m.group_id = g.group_id "
        "WHERE g.content_object_id = %(queue)s AND m.user_id = %(user)s) "
        f"OR p.id IN (SELECT u.permission_id FROM {users} u "
        "WHERE u.content_object_id = %(queue)s AND u.user_id = %(user)s))) "
        # The status list spelled out, so the small reviewtask_held index serves the claimed_by lookup.
        f"SELECT reviews, leads, (SELECT id FROM {tasks} WHERE queue_id = %(queue)s AND claimed_by_id = %(user)s "
        f"AND status IN ('{claimed}', '{escalated}', '{adjudication}') AND lease_expires_at >= %(now)s "
        f"AND (status = '{claimed}' OR leads = 1) "
        "ORDER BY priority DESC, created_at, id LIMIT 1) FROM grants"
    )


_CLAIM_STANDING = PreparedQuery("reviews_claim_standing", _claim_standing_sql(), ("superuser", "queue", "user", "now"))


def claim_standing(*, user, queue: ReviewQueue, now: datetime) -> ClaimStanding:
    """What claim-next needs to know before it picks, in one query: the user's grants on the queue and their
    own live claim there (a held lead item counts only for a lead, see held_statuses)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return ClaimStanding(False, False, None)
    params = {
        "superuser": user.is_superuser,
        "queue": queue.pk,
        "user": user.pk,
        "now": connection.ops.adapt_datetimefield_value(now),
    }
    with connection.cursor() as cursor:
        _CLAIM_STANDING.execute(cursor, params)
        reviews, leads, own_claim_id = cursor.fetchone()
    return ClaimStanding(bool(reviews), bool(leads), own_claim_id)


def lease_active(task: ReviewTask, now: datetime) -> bool:
    """Whether someone holds the task now: an undecided task with a holder whose lease has not run out."""
    return (
        task.status != ReviewTask.Status.DECIDED
        and task.claimed_by_id is not None
        and task.lease_expires_at is not None
        and task.lease_expires_at >= now
    )


def _after(priority: int, created_at: datetime, pk: int) -> Q:
    """Keyset condition: the rows after (priority, created_at, pk) in the order (-priority, created_at, pk)."""
    return (
        Q(priority__lt=priority)
        | Q(priority=priority, created_at__gt=created_at)
        | Q(priority=priority, created_at=created_at, pk__gt=pk)
    )


def task_after(*, user, task: ReviewTask) -> ReviewTask | None:
    """The next task of the same queue the user may take, after `task` in queue order, wrapping round."""
    candidates = (
        task_list(user=user, queue=task.queue, status="pending")
        .exclude(pk=task.pk)
        .filter(claimable(clock.now(), user=user))
    )
    return candidates.filter(_after(task.priority, task.created_at, task.pk)).first() or candidates.first()


def reasons_name(name: str):
    """A condition on ReviewTask: one of the rules that sent the item here is named `name`. JSON containment
    where the database has it (PostgreSQL, MariaDB); SQLite reads the list with json_each."""
    if connection.features.supports_json_field_contains:
        return Q(reasons__contains=[{"name": name}])
    return RawSQL(
        f"EXISTS (SELECT 1 FROM json_each({ReviewTask._meta.db_table}.reasons) AS reason "
        "WHERE json_extract(reason.value, '$.name') = %s)",
        [name],
        output_field=BooleanField(),
    )


def task_similar(*, user, task: ReviewTask, limit: int = 5) -> list[ReviewTask]:
    """Decided items of the same use case that fired the same rules (all of them) or concern the same
    subject, newest first, each with its last verdict (`verdict_decision`, `verdict_reviewer`). Only
    items of queues the user may review."""
    same_subject = Q(recommendation__subject_key=task.recommendation.subject_key)
    names = sorted({reason.get("name", "") for reason in task.reasons or []} - {""})
    same_rules = Q()
    for name in names:
        same_rules &= reasons_name(name)
    last = ReviewVerdict.objects.filter(task=OuterRef("pk")).order_by("-created_at", "-pk")
    return list(
        task_list(user=user, status=ReviewTask.Status.DECIDED)
        .filter(recommendation__use_case_id=task.recommendation.use_case_id)
        .filter(same_subject | same_rules if names else same_subject)
        .exclude(pk=task.pk)
        .annotate(
            verdict_decision=Subquery(last.values("decision")[:1]),
            verdict_reviewer=Subquery(last.values("reviewer__username")[:1]),
        )
        .order_by("-decided_at", "-pk")[:limit]
    )
