from django.urls import path

from . import views

app_name = "governance"

urlpatterns = [
    path("packs/", views.control_pack_list, name="pack-list"),
    path("packs/<slug:slug>/load/", views.control_pack_load, name="pack-load"),
    path("use-cases/<slug:slug>/checklist/", views.use_case_checklist, name="use-case-checklist"),
    path("use-cases/<slug:slug>/checklist/apply/", views.use_case_checklist_apply, name="use-case-checklist-apply"),
    path("use-cases/<slug:slug>/checklist/<id:pk>/", views.use_case_control_item_set, name="use-case-control-item-set"),
]
