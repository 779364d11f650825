"""The demo's outside systems: which stand-in serves which kind on which port, the connector settings
that reach them, and a mirror of the demo company's CRM into them.

The demo company keeps its accounts and tickets in one SQLite file (apps/workflows/demo/sources.py);
its Salesforce org, HubSpot portal and Zendesk desk hold the same accounts and tickets, as a real
company's systems of record would, so a write-back for any demo subject finds its record.
"""

from __future__ import annotations

import copy
import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from . import hubspot, openai, rest, salesforce, zendesk
from .server import StandIn


@dataclass(frozen=True)
class Ports:
    plain: int  # HubSpot, Zendesk, REST portal
    tls: int  # Salesforce
    llm: int  # OpenAI-compatible endpoint

    @classmethod
    def from_base(cls, port: int) -> Ports:
        return cls(plain=port, tls=port + 1, llm=port + 2)


LLM_MODEL = "llama3.1"


def connection_settings(ports: Ports, *, ca_file: str) -> dict:
    """Per kind, the Connector config and secrets (names as in apps/connectors/kinds.py) reaching the
    stand-ins, and a destination config; known before the servers start, so the demo loader can use it."""
    plain = f"http://127.0.0.1:{ports.plain}"
    return {
        "salesforce": {
            "config": {"instance_url": f"https://127.0.0.1:{ports.tls}", "api_version": "59.0", "ca_bundle": ca_file},
            "secrets": {"client_id": salesforce.DEMO_CLIENT_ID, "client_secret": salesforce.DEMO_CLIENT_SECRET},
            "destination": {"object": "Task", "subject_field": "AccountNumber"},
        },
        "hubspot": {
            "config": {"base_url": plain},
            "secrets": {"access_token": hubspot.DEMO_TOKEN},
            "destination": {"object": "companies", "subject_field": "account_id"},
        },
        "zendesk": {
            "config": {"base_url": plain},
            "secrets": {"email": zendesk.DEMO_EMAIL, "api_token": zendesk.DEMO_API_TOKEN},
            "destination": {"subject_field": "external_id"},
        },
        "rest": {
            "config": {
                "base_url": f"{plain}/portal",
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
        "model_openai": {
            "config": {
                "base_url": f"http://127.0.0.1:{ports.llm}/v1",
                "model": LLM_MODEL,
                "system_prompt": "You draft short, polite support replies. Never promise refunds.",
                "prompt_template": "Ticket: {subject}\n\n{body}\n\nDraft a reply.",
                "max_tokens": 200,
                "price_per_1k_input_tokens": "0.00015",
                "price_per_1k_output_tokens": "0.0006",
            },
            "secrets": {"api_key": "sk-standin-key"},
        },
        "ca_file": ca_file,
    }


def mirror_crm(plain, crm, source_db: Path) -> dict:
    """Copy the demo CRM's accounts into the Salesforce org and the HubSpot portal, and its tickets into
    the Zendesk desk, next to the recorded records (which keep their ids). Returns counts."""
    with sqlite3.connect(f"{Path(source_db).resolve().as_uri()}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        accounts = conn.execute("SELECT * FROM accounts ORDER BY account_id").fetchall()
        tickets = conn.execute("SELECT * FROM tickets ORDER BY ticket_id").fetchall()
    org = crm.state["salesforce"]["records"]
    portal = plain.state["hubspot"]["objects"]
    desk = plain.state["zendesk"]["tickets"]
    known_accounts = {record["AccountNumber"] for record in org["Account"]}
    account_template = copy.deepcopy(org["Account"][0])
    company_template = copy.deepcopy(portal["companies"][0])
    ticket_template = copy.deepcopy(next(iter(desk.values())))
    known_tickets = {ticket["external_id"] for ticket in desk.values()}
    added = {"accounts": 0, "tickets": 0}
    for number, row in enumerate(accounts, start=1):
        if row["account_id"] in known_accounts:
            continue
        record_id = salesforce.record_id("001", 100000 + number)
        account = copy.deepcopy(account_template)
        account.update(
            Id=record_id,
            Name=row["name"],
            AccountNumber=row["account_id"],
            Industry=row["industry"],
            AnnualRevenue=float(row["arr"] or 0),
            LastModifiedDate=_sf_time(row["updated_at"]),
            SystemModstamp=_sf_time(row["updated_at"]),
        )
        account["attributes"]["url"] = account["attributes"]["url"].rsplit("/", 1)[0] + "/" + record_id
        org["Account"].append(account)
        company = copy.deepcopy(company_template)
        company_id = str(20000 + number)
        company.update(id=company_id, updatedAt=_hs_time(row["updated_at"]))
        company["properties"].update(
            name=row["name"],
            account_id=row["account_id"],
            annualrevenue=str(row["arr"]),
            hs_object_id=company_id,
            hs_lastmodifieddate=_hs_time(row["updated_at"]),
        )
        portal["companies"].append(company)
        added["accounts"] += 1
    next_id = max(desk) + 1
    for row in tickets:
        if row["ticket_id"] in known_tickets:
            continue
        ticket = copy.deepcopy(ticket_template)
        ticket.update(
            id=next_id,
            url=ticket["url"].rsplit("/", 1)[0] + f"/{next_id}.json",
            external_id=row["ticket_id"],
            subject=row["subject"],
            raw_subject=row["subject"],
            description=row["body"],
            priority=row["priority"],
            status=row["status"],
            created_at=_z_time(row["created_at"]),
            updated_at=_z_time(row["updated_at"]),
        )
        desk[next_id] = ticket
        next_id += 1
        added["tickets"] += 1
    return added


def _parse(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _sf_time(value: str) -> str:
    return _parse(value).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _hs_time(value: str) -> str:
    return _parse(value).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _z_time(value: str) -> str:
    return _parse(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def serve(ports: Ports, *, tls_dir: str | None, mirror: Path | None):
    """Build (not start) the three demo servers: plain (HubSpot, Zendesk, REST), Salesforce (TLS), LLM."""
    plain = StandIn(hubspot.ROUTES + zendesk.ROUTES + rest.ROUTES, port=ports.plain)
    hubspot.install(plain)
    zendesk.install(plain)
    rest.install(plain)
    crm = salesforce.salesforce_standin(port=ports.tls, tls_dir=tls_dir)
    llm = openai.openai_standin(port=ports.llm)
    if mirror is not None and Path(mirror).exists():
        mirror_crm(plain, crm, mirror)
    return plain, crm, llm
