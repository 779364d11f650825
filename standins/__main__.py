"""Serve the demo's outside systems on loopback until interrupted:

    python -m standins --port 8025 [--tls-port 8026] [--tls-dir var/standins-tls]

- HubSpot (/crm/v3, /account-info/v3), Zendesk (/api/v2) and the generic REST portal (/portal) share the
  plain-HTTP --port; their paths do not collide.
- Salesforce listens with TLS on --tls-port (default: --port + 1), since simple-salesforce only speaks
  https. Its certificate is self-signed; --tls-dir keeps it (cert.pem, key.pem) across runs, so the CA
  bundle path given to the connector stays valid.

Their data are the recorded bodies in standins/recordings/: accounts ACC-0001…ACC-0005 (Salesforce
AccountNumber, HubSpot company property account_id, portal customer id) and tickets TCK-0001…TCK-0005
(Zendesk external_id, ticket ids 1…5), the keys of the demo CRM (apps/workflows/demo/sources.py).

The first line on stdout is JSON: per kind, the Connector `config` and `secrets` (names as in
apps/connectors/kinds.py) that reach these stand-ins, plus `ca_file`. Doorstep must allow-list 127.0.0.1
(DOORSTEP_OUTBOUND_ALLOWLIST) to call them. SIGINT or SIGTERM stops the servers.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from . import hubspot, rest, salesforce, zendesk
from .server import StandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m standins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8025, help="plain HTTP: HubSpot, Zendesk, REST (8025)")
    parser.add_argument("--tls-port", type=int, help="HTTPS: Salesforce (default: --port + 1)")
    parser.add_argument("--tls-dir", help="keep the TLS certificate here and reuse it")
    args = parser.parse_args(argv)

    plain = StandIn(hubspot.ROUTES + zendesk.ROUTES + rest.ROUTES, port=args.port)
    hubspot.install(plain)
    zendesk.install(plain)
    rest.install(plain)
    crm = salesforce.salesforce_standin(port=args.tls_port or args.port + 1, tls_dir=args.tls_dir)

    print(json.dumps(connection_settings(plain, crm)), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with plain, crm:
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
    sys.exit(0)


def connection_settings(plain: StandIn, crm: StandIn) -> dict:
    return {
        "salesforce": {
            "config": {"instance_url": crm.url, "api_version": "59.0", "ca_bundle": crm.ca_file},
            "secrets": {"client_id": salesforce.DEMO_CLIENT_ID, "client_secret": salesforce.DEMO_CLIENT_SECRET},
            "destination": {"object": "Task", "subject_field": "AccountNumber"},
        },
        "hubspot": {
            "config": {"base_url": plain.url},
            "secrets": {"access_token": hubspot.DEMO_TOKEN},
            "destination": {"object": "companies", "subject_field": "account_id"},
        },
        "zendesk": {
            "config": {"base_url": plain.url},
            "secrets": {"email": zendesk.DEMO_EMAIL, "api_token": zendesk.DEMO_API_TOKEN},
            "destination": {"subject_field": "external_id"},
        },
        "rest": {
            "config": {
                "base_url": f"{plain.url}/portal",
                "auth_type": "bearer",
                "read_path": "/customers/{key}",
                "list_path": "/customers?updated_since={cursor}",
                "records_path": "$.data",
                "field_map": {
                    "account_id": "$.id",
                    "name": "$.name",
                    "health_score": "$.health.score",
                    "health_trend": "$.health.trend",
                    "owner_email": "$.owner.email",
                    "updated_at": "$.updated",
                },
                "write_path": "/customers/{key}/notes",
                "write_method": "POST",
                "write_id_path": "$.note.id",
            },
            "secrets": {"token": rest.DEMO_TOKEN},
            "destination": {},
        },
        "ca_file": crm.ca_file,
    }


if __name__ == "__main__":
    main()
