"""Serve the demo's outside systems on loopback until interrupted:

    python -m standins --port 8025 [--tls-dir var/standins-tls] [--mirror var/demo/source.sqlite3]

- HubSpot (/crm/v3, /account-info/v3), Zendesk (/api/v2) and the generic REST portal (/portal) share
  --port; their paths do not collide.
- Salesforce listens with TLS on --port + 1, since simple-salesforce only speaks https. Its certificate is
  self-signed; --tls-dir keeps it (cert.pem, key.pem) across runs, so the CA bundle path given to the
  connector stays valid.
- An OpenAI-compatible chat endpoint listens on --port + 2 (/v1/chat/completions).

Their data are the recorded bodies in standins/recordings/ (accounts ACC-0001…ACC-0005, tickets
TCK-0001…TCK-0005) plus, with --mirror, every account and ticket of the demo company's CRM file.

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
from pathlib import Path

from .demo import Ports, connection_settings, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m standins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8025, help="plain HTTP; Salesforce +1, the LLM +2 (8025)")
    parser.add_argument("--tls-dir", help="keep the TLS certificate here and reuse it")
    parser.add_argument("--mirror", type=Path, help="the demo CRM's SQLite file to copy accounts and tickets from")
    args = parser.parse_args(argv)

    ports = Ports.from_base(args.port)
    plain, crm, llm = serve(ports, tls_dir=args.tls_dir, mirror=args.mirror)
    print(json.dumps(connection_settings(ports, ca_file=crm.ca_file)), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with plain, crm, llm:
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
