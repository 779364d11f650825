import secrets


class ContentSecurityPolicyMiddleware:
    """A strict CSP with a per-request nonce: no inline script, no eval (htmx eval off, Plotly strict).

    No page may be framed (frame-ancestors 'none'), except a response whose view names the origins that
    may frame it in `response.csp_frame_ancestors` (the embeddable widget; the view passes only origins
    validated as scheme://host[:port]). An empty list keeps 'none'."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and not request.path.startswith("/api/docs"):
            ancestors = " ".join(getattr(response, "csp_frame_ancestors", None) or ()) or "'none'"
            response["Content-Security-Policy"] = (
                "default-src 'self'; "
                f"script-src 'self' 'nonce-{request.csp_nonce}'; "
                f"style-src 'self' 'nonce-{request.csp_nonce}'; "
                "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                f"frame-ancestors {ancestors}; base-uri 'self'; form-action 'self'"
            )
        return response
