"""A small but real OpenID Connect provider for the tests, built from Authlib's server components on Flask:
discovery document, JWKS, authorization endpoint (code flow + PKCE; it auto-approves `signed_in` user),
token endpoint (id_token signed RS256 with a key generated per provider) and userinfo endpoint. It runs on
127.0.0.1 in a thread; Doorstep talks to it over HTTP exactly as to a real IdP.

Misbehaviour for refusal tests: `foreign_key=True` signs id_tokens with a key not in the JWKS (same kid);
`tamper` (a dict) rewrites the id_token's claims after signing; `audience` issues validly signed id_tokens
for another client."""

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

KID = "test-key-1"


@dataclass
class User:
    sub: str
    claims: dict

    def get_user_id(self):
        return self.sub


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list
    id_token_signed_response_alg: str = "RS256"

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        return " ".join(s for s in scope.split() if s in {"openid", "email", "profile", "groups"})

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class Provider:
    def __init__(self, *, client_id="doorstep", client_secret="s3cret-for-tests", redirect_uri):
        self.key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"}, private=True)
        self.foreign = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"}, private=True)
        self.client = Client(client_id, client_secret, [redirect_uri])
        self.users: dict[str, User] = {}
        self.signed_in: str | None = None
        self.foreign_key = False
        self.tamper: dict | None = None
        self.audience: str | None = None
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: dict[str, User] = {}
        self.app = self._build_app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add_user(self, sub, **claims):
        self.users[sub] = User(sub, claims)

    @property
    def discovery_url(self):
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._thread.join(timeout=5)

    def _build_app(self):
        provider = self
        app = Flask("oidc-test-provider")
        app.config["OAUTH2_ERROR_URIS"] = []

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                provider.codes[code] = AuthorizationCode(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.payload.scope,
                    user=req.user,
                    nonce=req.payload.data.get("nonce"),
                    code_challenge=req.payload.data.get("code_challenge"),
                    code_challenge_method=req.payload.data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code, client):
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client):
                return provider.foreign if provider.foreign_key else provider.key

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": KID}

            def get_client_claims(self, client):
                return {"iss": provider.issuer, "aud": [provider.audience or client.get_client_id()]}

            def generate_user_info(self, user, scope):
                return {"sub": user.sub, **user.claims}

            def encode_id_token(self, token, req):
                id_token = super().encode_id_token(token, req)
                if provider.tamper is None:
                    return id_token
                header, payload, signature = id_token.split(".")
                claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                claims.update(provider.tamper)
                payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
                return f"{header}.{payload}.{signature}"

        def save_token(token, req):
            provider.tokens[token["access_token"]] = req.user

        server = AuthorizationServer(
            app,
            query_client=lambda cid: provider.client if cid == provider.client.client_id else None,
            save_token=save_token,
        )
        server.register_grant(CodeGrant, [IdToken(require_nonce=True), CodeChallenge(required=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(
                issuer=provider.issuer,
                authorization_endpoint=f"{provider.issuer}/authorize",
                token_endpoint=f"{provider.issuer}/token",
                userinfo_endpoint=f"{provider.issuer}/userinfo",
                jwks_uri=f"{provider.issuer}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                code_challenge_methods_supported=["S256"],
                token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
            )

        @app.get("/jwks")
        def jwks():
            return jsonify(keys=[provider.key.as_dict(private=False)])

        @app.get("/authorize")
        def authorize():
            # Auto-approves: the test has already "signed in" one of the provider's users.
            user = provider.users[provider.signed_in]
            try:
                grant = server.get_consent_grant(end_user=user)
            except OAuth2Error as error:
                return jsonify(error=error.error, error_description=error.description), 400
            return server.create_authorization_response(grant=grant, grant_user=user)

        @app.post("/token")
        def issue_token():
            return server.create_token_response()

        @app.get("/userinfo")
        def userinfo():
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            user = provider.tokens.get(token) if scheme.lower() == "bearer" else None
            if user is None:
                return jsonify(error="invalid_token"), 401
            return jsonify(sub=user.sub, **user.claims)

        return app
