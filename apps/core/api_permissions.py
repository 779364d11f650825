from rest_framework.permissions import BasePermission


class HasScope(BasePermission):
    """An API key may be limited to scopes; session users are limited by object permissions alone."""

    message = "This API key does not have the scope this operation needs."

    def has_permission(self, request, view):
        key = request.auth
        scope = getattr(view, "required_scope", None)
        if scope is None or not hasattr(key, "allows"):
            return True
        if isinstance(scope, dict):
            scope = scope.get(request.method, scope.get("*"))
        return scope is None or key.allows(scope)
