from django.db import models
from simple_history.manager import HistoryDescriptor
from simple_history.models import HistoricalRecords


class _HistoryDescriptor(HistoryDescriptor):
    """`obj.history` with its manager class built once: the stock descriptor builds a new class (an inspect of
    every queryset method) on each access, and simple-history reads it on every recorded change."""

    def __init__(self, model, manager, queryset):
        super().__init__(model, manager, queryset)
        self.bound_manager_class = manager.from_queryset(queryset)

    def __get__(self, instance, owner):
        return self.bound_manager_class(self.model, instance)


class GovernedHistory(HistoricalRecords):
    """simple-history as governed models record it, indexed for how the history is read.

    Stock simple-history copies every index of the model onto its history table (one per foreign key, slug…),
    so each recorded change updates a dozen indexes no read uses. The trail reads history newest first
    (history_date) and one object's versions in order (its previous version, the object filter): those two
    indexes are all it needs."""

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
