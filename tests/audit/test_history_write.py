"""Governed history is written by one prepared INSERT per model (apps.core.history): the row it writes must be
the row simple-history's own save writes, field for field, and its signals must still fire."""

from django.db.models.signals import post_save
from simple_history.models import HistoricalRecords
from simple_history.signals import post_create_historical_record, pre_create_historical_record

from apps.core.history import GovernedHistory
from apps.workflows.models import UseCase


def _row(record) -> dict:
    skip = {"history_id", "history_date", "updated_at"}
    return {f.attname: getattr(record, f.attname) for f in type(record)._meta.concrete_fields if f.name not in skip}


def _records_of(model) -> GovernedHistory:
    """The GovernedHistory that records `model` (it listens to the model's post_save)."""
    receivers = [getattr(receiver, "__self__", None) for receiver in post_save._live_receivers(model)[0]]
    return next(receiver for receiver in receivers if isinstance(receiver, GovernedHistory))


def test_the_fast_insert_writes_what_the_stock_save_writes(world):
    seen = []

    def pre(sender, history_instance, **kwargs):
        seen.append(("pre", history_instance.pk))

    def post(sender, history_instance, **kwargs):
        seen.append(("post", history_instance.pk))

    pre_create_historical_record.connect(pre)
    post_create_historical_record.connect(post)
    try:
        use_case = UseCase.objects.get(pk=world.churn.pk)
        use_case.purpose = "Changed purpose, with a ’quote’ and ünicode"
        use_case._history_user = world.governance
        use_case._change_reason = "Test the writer"
        use_case.save()
        fast = use_case.history.order_by("-history_id").first()
        HistoricalRecords.create_historical_record(_records_of(UseCase), use_case, "~")  # the stock writer
    finally:
        pre_create_historical_record.disconnect(pre)
        post_create_historical_record.disconnect(post)
    stock = use_case.history.order_by("-history_id").first()
    assert stock.history_id != fast.history_id
    assert _row(fast) == _row(stock)
    assert fast.history_user == world.governance and fast.history_change_reason == "Test the writer"
    assert seen[:2] == [("pre", None), ("post", fast.history_id)]
