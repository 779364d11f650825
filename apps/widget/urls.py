from django.urls import path

from . import views

app_name = "widget"

urlpatterns = [
    path("embed/<slug:slug>/", views.embed_panel, name="embed-panel"),
    path("embed/<slug:slug>/origins/", views.embed_origins, name="embed-origins"),
    path("<str:token>/", views.widget_show, name="show"),
]
