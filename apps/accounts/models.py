from django.conf import settings
from django.db import models
from django.utils import timezone


class AccessEvent(models.Model):
    """One access fact (sign-in, failure, lockout, second factor, SSO refusal, enrolment, export): an immutable
    append, not history-tracked, so the audit trail can show who tried to get in, when and from where."""

    class Kind(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login_failed", "Login failed"
        LOCKED_OUT = "locked_out", "Locked out"
        SECOND_FACTOR_FAILED = "second_factor_failed", "Second factor failed"
        SSO_REFUSED = "sso_refused", "Single sign-on refused"
        SESSION_EXPIRED = "session_expired", "Session expired"
        LOGOUT = "logout", "Logged out"
        TOTP_ENABLED = "totp_enabled", "Second factor enabled"
        TOTP_DISABLED = "totp_disabled", "Second factor disabled"
        EXPORT = "export", "Export"
        GRANT = "grant", "Permission granted"
        REVOKE = "revoke", "Permission revoked"
        API_KEY_USED = "api_key_used", "API key used"
        API_KEY_REFUSED = "api_key_refused", "API key refused"

    class Method(models.TextChoices):
        PASSWORD = "password", "Password"
        PASSWORD_TOTP = "password_totp", "Password + TOTP"
        SSO = "sso", "Single sign-on"
        API_KEY = "api_key", "API key"

    # The account, when one is known; `username` keeps what was typed (also for unknown names).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    method = models.CharField(max_length=16, choices=Method.choices, blank=True)
    detail = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["-occurred_at", "-id"], name="access_event_recent"),
            models.Index(fields=["user", "-occurred_at"], name="access_event_user_recent"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.username or '?'} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class TotpDevice(models.Model):
    """A user's TOTP authenticator. The secret is encrypted at rest; `last_step` refuses a code used twice."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device")
    secret_encrypted = models.TextField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_step = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"TOTP for {self.user}"


class SsoIdentity(models.Model):
    """Links an OpenID Connect subject (issuer + sub) to the local account it signs in as."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique_subject")]

    def __str__(self):
        return f"{self.issuer} {self.subject} → {self.user}"
