from datetime import timedelta

from django.db.models import Exists, OuterRef
from rest_framework import authentication, exceptions

from apps.accounts.models import AccessEvent
from apps.accounts.services import access_event_record
from apps.core import clock

from .models import ApiKey, digest

_LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`; request.auth is the ApiKey, request.user its owner."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <key>'.")
        limited = Exists(ApiKey.use_cases.through.objects.filter(apikey_id=OuterRef("pk")))
        key = (
            ApiKey.objects.select_related("user").annotate(limited=limited).filter(key_digest=digest(header[1])).first()
        )
        if key is None or not key.is_usable() or not key.user.is_active:
            detail = "unknown key" if key is None else f"{key} is revoked, expired or its owner inactive"
            access_event_record(
                kind=AccessEvent.Kind.API_KEY_REFUSED,
                request=request,
                user=key.user if key else None,
                method=AccessEvent.Method.API_KEY,
                detail=detail,
            )
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        now = clock.now()
        # Coarse last-used time and access record: one write a minute per key, not one per request.
        if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            access_event_record(
                kind=AccessEvent.Kind.API_KEY_USED,
                request=request,
                user=key.user,
                method=AccessEvent.Method.API_KEY,
                detail=f"{key} {request.method} {request.path}",
            )
        # A key limited to use cases narrows every use-case read of this request (apps.core.permissions).
        # Read only for a limited key: unlimited keys (most ingestion traffic) pay no second query.
        key.user.api_key_use_cases = frozenset(key.use_cases.values_list("pk", flat=True)) if key.limited else None
        return key.user, key

    def authenticate_header(self, request):
        return self.keyword
