from django.conf import settings


def client_ip(request) -> str | None:
    """The caller's address: REMOTE_ADDR, or behind DOORSTEP_TRUSTED_PROXY_COUNT proxies the address the
    outermost trusted proxy saw (X-Forwarded-For entries further left are client-supplied and forgeable)."""
    proxies = settings.DOORSTEP_TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR") or None
