from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"

    def ready(self):
        from . import signals  # noqa: F401 - records logins, failed logins and lockouts
