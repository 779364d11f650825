class ServiceError(Exception):
    """A business rule said no. `field` names the input at fault when there is one."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class PermissionDenied(ServiceError):
    status_code = 403

    def __init__(self, message: str = "You do not have permission to do this."):
        super().__init__(message, code="permission_denied")


class NotFound(ServiceError):
    status_code = 404

    def __init__(self, message: str = "Not found."):
        super().__init__(message, code="not_found")


class Conflict(ServiceError):
    status_code = 409
