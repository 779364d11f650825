import secrets


class ContentSecurityPolicyMiddleware:
    """A strict CSP with a per-request nonce: no inline script, no eval (htmx eval off, Plotly strict)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and not request.path.startswith("/api/docs"):
            response["Content-Security-Policy"] = (
                "default-src 'self'; "
                f"script-src 'self' 'nonce-{request.csp_nonce}'; "
                f"style-src 'self' 'nonce-{request.csp_nonce}'; "
                "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
            )
        return response
