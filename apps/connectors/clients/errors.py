class ConnectorError(Exception):
    """An outside system failed or refused; the message is safe to show to the integrator."""


class ModelCallError(ConnectorError):
    pass
