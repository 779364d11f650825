"""Which client class speaks for which connector kind (imported lazily: a kind's library loads when used)."""

from importlib import import_module

from .base import Client
from .errors import ConnectorError

CLIENTS = {
    "sql": "apps.connectors.clients.sql:SqlClient",
    "salesforce": "apps.connectors.clients.salesforce:SalesforceClient",
    "hubspot": "apps.connectors.clients.hubspot:HubSpotClient",
    "zendesk": "apps.connectors.clients.zendesk:ZendeskClient",
    "rest": "apps.connectors.clients.rest:RestClient",
    "file": "apps.connectors.clients.files:FileClient",
}


def client_for(connector) -> Client:
    """The client of a system-of-record or file connector."""
    try:
        module_name, class_name = CLIENTS[connector.kind].split(":")
    except KeyError:
        raise ConnectorError(
            f"A {connector.get_kind_display()} connector is not a system of record", permanent=True
        ) from None
    return getattr(import_module(module_name), class_name)(connector)
