from django.urls import path

from . import views

urlpatterns = [
    path("use-cases", views.UseCaseListView.as_view(), name="api-use-case-list"),
    path("use-cases/<slug:slug>/transitions", views.UseCaseTransitionView.as_view(), name="api-use-case-transitions"),
    path("recommendations", views.RecommendationListCreateView.as_view(), name="api-recommendation-list"),
    path("recommendations/batch", views.RecommendationBatchView.as_view(), name="api-recommendation-batch"),
    path("recommendations/<id:pk>", views.RecommendationDetailView.as_view(), name="api-recommendation-detail"),
    path("recommendations/<id:pk>/trace", views.RecommendationTraceView.as_view(), name="api-recommendation-trace"),
    path("runs", views.RunListCreateView.as_view(), name="api-run-list"),
    path("runs/<id:pk>", views.RunDetailView.as_view(), name="api-run-detail"),
]
