"""The OpenID Connect relying party (Authlib's Django client), built from settings.DOORSTEP_OIDC."""

from functools import lru_cache

from authlib.integrations.django_client import OAuth
from django.conf import settings


def sso_enabled() -> bool:
    conf = settings.DOORSTEP_OIDC
    return bool(conf["DISCOVERY_URL"] and conf["CLIENT_ID"])


def sso_client():
    conf = settings.DOORSTEP_OIDC
    return _client(conf["DISCOVERY_URL"], conf["CLIENT_ID"], conf["CLIENT_SECRET"], conf["SCOPE"])


@lru_cache(maxsize=4)
def _client(discovery_url: str, client_id: str, client_secret: str, scope: str):
    # Cached per configuration: the discovery document and the JWKS are fetched once (a key id the cached
    # JWKS does not know makes Authlib fetch it again, so key rotation at the IdP works).
    oauth = OAuth()
    return oauth.register(
        name="sso",
        server_metadata_url=discovery_url,
        client_id=client_id,
        client_secret=client_secret,
        client_kwargs={"scope": scope, "code_challenge_method": "S256"},
    )
