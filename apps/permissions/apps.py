from django.apps import AppConfig


class PermissionsConfig(AppConfig):
    name = "apps.permissions"

    def ready(self):
        from . import schema  # noqa: F401 - registers the API key scheme with drf-spectacular
        from .signals import connect

        connect()
