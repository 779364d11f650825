from django.db import connections, models, router
from django.utils import timezone
from simple_history.manager import HistoryDescriptor
from simple_history.models import HistoricalRecords
from simple_history.signals import post_create_historical_record, pre_create_historical_record


class _HistoryDescriptor(HistoryDescriptor):
    """`obj.history` with its manager class built once: the stock descriptor builds a new class (an inspect of
    every queryset method) on each access, and simple-history reads it on every recorded change."""

    def __init__(self, model, manager, queryset):
        super().__init__(model, manager, queryset)
        self.bound_manager_class = manager.from_queryset(queryset)

    def __get__(self, instance, owner):
        return self.bound_manager_class(self.model, instance)


class GovernedHistory(HistoricalRecords):
    """simple-history as governed models record it, indexed for how the history is read and cheap to write.

    Stock simple-history copies every index of the model onto its history table (one per foreign key, slug…),
    so each recorded change updates a dozen indexes no read uses. The trail reads history newest first
    (history_date) and one object's versions in order (its previous version, the object filter): those two
    indexes are all it needs.

    Each change is written with one INSERT whose SQL is built once per history model: the ORM's save compiled
    the statement anew for every change, which cost as much as running it (bench/audit.py)."""

    def copy_fields(self, model):
        fields = super().copy_fields(model)
        for field in fields.values():
            field.db_index = False
        return fields

    def get_meta_options(self, model):
        options = super().get_meta_options(model)
        options["indexes"] = (models.Index(fields=(model._meta.pk.attname, "history_date", "history_id")),)
        return options

    def finalize(self, sender, **kwargs):
        super().finalize(sender, **kwargs)
        stock = sender.__dict__.get(self.manager_name)
        if isinstance(stock, HistoryDescriptor) and not isinstance(stock, _HistoryDescriptor):
            descriptor = _HistoryDescriptor(stock.model, stock.manager_class, stock.queryset_class)
            setattr(sender, self.manager_name, descriptor)

    def create_historical_record(self, instance, history_type, using=None):
        history_model = getattr(instance, self.manager_name).model
        if self.m2m_fields or self.related_name:  # the stock path writes those extra rows
            return super().create_historical_record(instance, history_type, using=using)
        using = using if self.use_base_model_db else router.db_for_write(history_model)
        connection = connections[using]
        history_date = getattr(instance, "_history_date", timezone.now())
        history_user = self.get_history_user(instance)
        reason = self.get_change_reason_for_object(instance, history_type, using)
        record = history_model(
            history_date=history_date,
            history_type=history_type,
            history_user=history_user,
            history_change_reason=reason,
            **{field.attname: getattr(instance, field.attname) for field in self.fields_included(instance)},
        )
        signal_args = {
            "instance": instance,
            "history_date": history_date,
            "history_user": history_user,
            "history_change_reason": reason,
            "history_instance": record,
            "using": using,
        }
        pre_create_historical_record.send(sender=history_model, **signal_args)
        fields, sql = _insert_statement(history_model, connection)
        with connection.cursor() as cursor:
            # pre_save(add=True) and get_db_prep_save, as the ORM's insert does for each field.
            cursor.execute(sql, [field.get_db_prep_save(field.pre_save(record, True), connection) for field in fields])
            record.pk = cursor.fetchone()[0]
        record._state.adding, record._state.db = False, using
        post_create_historical_record.send(sender=history_model, **signal_args)


_INSERTS: dict[tuple, tuple[list, str]] = {}


def _insert_statement(history_model, connection) -> tuple[list, str]:
    """The fields written and the INSERT … RETURNING of one history model on one database, built once."""
    key = (history_model, connection.alias)
    if key not in _INSERTS:
        quote = connection.ops.quote_name
        fields = [field for field in history_model._meta.local_concrete_fields if not field.primary_key]
        columns = ", ".join(quote(field.column) for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        _INSERTS[key] = (
            fields,
            f"INSERT INTO {quote(history_model._meta.db_table)} ({columns}) VALUES ({placeholders}) "
            f"RETURNING {quote(history_model._meta.pk.column)}",
        )
    return _INSERTS[key]
