class ConnectorError(Exception):
    """An outside system failed or refused; the message is safe to show to the integrator.

    `permanent` errors (bad configuration, a refused address) fail at once: retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class ModelCallError(ConnectorError):
    pass
