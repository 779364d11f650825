"""The app's URLs plus the stock baseline under /api/stock/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from config import urls as config_urls

from .stock import StockRecommendationViewSet

router = DefaultRouter()
router.register("recommendations", StockRecommendationViewSet, basename="stock-recommendation")

urlpatterns = [path("api/stock/", include(router.urls)), *config_urls.urlpatterns]

handler400 = config_urls.handler400
handler404 = config_urls.handler404
handler500 = config_urls.handler500
