"""The personas of PRODUCT.md as groups. A role says which home a user lands on; what they may
see and do is decided per object by grants (apps.permissions.services.object_permission_grant)."""

ADMIN = "Admin"
GOVERNANCE = "Governance officer"
REVIEWER = "Reviewer"
EXECUTIVE = "Executive"
INTEGRATOR = "Integrator"

ALL = (ADMIN, GOVERNANCE, REVIEWER, EXECUTIVE, INTEGRATOR)


def role_of(user) -> str | None:
    """The user's persona; a superuser is an admin. First match in ALL order wins."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return ADMIN
    names = {g.name for g in user.groups.all()}
    return next((role for role in ALL if role in names), None)
