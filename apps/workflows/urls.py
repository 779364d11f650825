from django.urls import path

from . import views

app_name = "workflows"

urlpatterns = [
    path("", views.use_case_list, name="use-case-list"),
    path("<slug:slug>/", views.use_case_detail, name="use-case-detail"),
]
