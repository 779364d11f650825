from django.contrib import admin

from .models import AccessEvent


@admin.register(AccessEvent)
class AccessEventAdmin(admin.ModelAdmin):
    """Read-only: the access record is appended by the sign-in code, never edited."""

    list_display = ("occurred_at", "kind", "username", "method", "ip", "detail")
    list_filter = ("kind", "method")
    search_fields = ("username", "ip")
    show_full_result_count = False  # no COUNT(*) over a table that only grows

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
