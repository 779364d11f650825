"""Failed deliveries: every delivery that gave up, visible to those who may view its use case, with a
Retry button for those who may run it (apps.delivery.services.delivery_retry checks run_usecase).

Every row comes through apps.delivery.selectors (permission-filtered), so a delivery of a use case the
user may not view is a 404 by page, fragment or guessed id. One view serves the page and its rows."""

from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST, require_safe

from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied
from apps.core.htmx import render_page

from . import selectors, services
from .models import Delivery

PAGE_SIZE = 25
TEMPLATE = "delivery/failed_list.html"


def _after(value: str) -> int | None:
    """The id a page starts after; None (the first page) for a missing or malformed cursor."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _row(delivery: Delivery, *, can_retry: bool, notice: str = "", ok: bool = False) -> dict:
    last = (delivery.attempt_log or [{}])[-1]
    last_at = datetime.fromisoformat(last["at"]) if last.get("at") else None
    return {"delivery": delivery, "can_retry": can_retry, "notice": notice, "ok": ok, "last_at": last_at}


@login_required
@require_safe
def failed_list(request):
    after = _after(request.GET.get("after", ""))
    page, has_next = selectors.deliveries_failed_page(user=request.user, after=after, size=PAGE_SIZE)
    retryable = selectors.retryable_use_case_ids(user=request.user, deliveries=page)
    context = {
        "rows": [_row(d, can_retry=d.recommendation.use_case_id in retryable) for d in page],
        "next_after": page[-1].pk if has_next else None,
        "is_first_page": after is None,
    }
    return render_page(request, TEMPLATE, context, fragment="failed-rows")


@login_required
@require_POST
def delivery_retry(request, pk: int):
    """Retry one failed delivery; to htmx, the updated row (its status now pending, or why not)."""
    try:
        delivery = selectors.delivery_get(user=request.user, pk=pk)
    except Delivery.DoesNotExist:
        raise Http404("No such delivery, or you may not see it.") from None
    try:
        delivery = services.delivery_retry(actor=Actor.from_request(request), delivery=delivery)
    except PermissionDenied as exc:
        # The page offers no Retry button to those who may only view: this request was made by hand.
        raise DjangoPermissionDenied(exc.message) from None
    except Conflict as exc:  # retried by someone else meanwhile, or not failed
        notice, ok = exc.message, False
    else:
        notice, ok = "Sent again: the delivery is back in the queue.", True
    if not request.htmx:
        messages.add_message(request, messages.SUCCESS if ok else messages.WARNING, notice)
        return redirect("delivery:failed-list")
    delivery.refresh_from_db()
    row = _row(delivery, can_retry=delivery.status == Delivery.Status.FAILED, notice=notice, ok=ok)
    return render_page(request, TEMPLATE, {"row": row}, fragment="delivery-row")
