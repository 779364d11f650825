"""The app's URLs plus the baselines: the stock DRF viewset under /api/stock/, and under /bench-admin/ a Django
admin changelist of review tasks filtered by the same object grants as the review desk (bench/review_queue.py).
The admin site is the bench's own: the product registers no such admin."""

from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from apps.core.permissions import restrict
from apps.reviews.models import ReviewQueue, ReviewTask
from config import urls as config_urls

from .stock import StockRecommendationViewSet

router = DefaultRouter()
router.register("recommendations", StockRecommendationViewSet, basename="stock-recommendation")


class GuardedReviewTaskAdmin(admin.ModelAdmin):
    """The stock changelist (COUNT paginator, 25 a page), narrowed to the queues granted to the user."""

    list_display = ("id", "queue", "status", "priority", "created_at", "due_at", "claimed_by")
    list_select_related = ("queue", "claimed_by")
    ordering = ("-priority", "created_at", "pk")
    list_per_page = 25

    def get_queryset(self, request):
        queues = restrict(ReviewQueue.objects.all(), request.user, "review_reviewqueue")
        return super().get_queryset(request).filter(queue__in=queues)


bench_admin = admin.AdminSite(name="bench-admin")
bench_admin.register(ReviewTask, GuardedReviewTaskAdmin)

urlpatterns = [
    path("api/stock/", include(router.urls)),
    path("bench-admin/", bench_admin.urls),
    *config_urls.urlpatterns,
]

handler400 = config_urls.handler400
handler404 = config_urls.handler404
handler500 = config_urls.handler500
