from django.urls import path

from . import views

app_name = "workflows"

urlpatterns = [
    path("", views.use_case_list, name="use-case-list"),
    path("new/", views.use_case_propose, name="use-case-propose"),
    path("<slug:slug>/", views.use_case_detail, name="use-case-detail"),
    path("<slug:slug>/transition/", views.use_case_transition, name="use-case-transition"),
    path("<slug:slug>/sampling/", views.use_case_sampling, name="use-case-sampling"),
    path("<slug:slug>/settings/", views.use_case_settings, name="use-case-settings"),
]
