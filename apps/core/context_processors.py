from apps.permissions.roles import role_of


def navigation(request):
    user = getattr(request, "user", None)
    return {"persona": role_of(user) if user is not None else None}
