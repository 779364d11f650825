"""The demo company's SaaS systems of record and its LLM, played by the local stand-ins (`python -m
standins`, started by `make run`): Salesforce, HubSpot, Zendesk, a REST customer portal and an
OpenAI-compatible endpoint, connected the way an integrator would connect the real ones.

Connected after the 90-day history is replayed (the stand-ins hold today's data, not the past's), so
from then on approved churn advice also becomes a Salesforce task on the account and approved replies
an internal Zendesk comment, and the reply use case falls back to the LLM when its retriever fails.
"""

import datetime as dt
from pathlib import Path

from django.contrib.auth.models import Group

from apps.connectors.models import Connector, Destination, SourceDataset
from apps.permissions import roles
from apps.permissions.services import object_permission_grant
from standins.demo import Ports, connection_settings

from .world import CODENAMES


def connect_outside_systems(world, *, port: int, tls_dir: Path) -> list[Connector]:
    reach = connection_settings(Ports.from_base(port), ca_file=str(Path(tls_dir) / "cert.pem"))

    def save(obj, reason: str):
        obj._history_user = world.admin
        obj._change_reason = reason
        obj.save()
        return obj

    def connector(name: str, kind: str, description: str) -> Connector:
        new = Connector(name=name, kind=kind, description=description, config=reach[kind]["config"])
        new.set_secrets(reach[kind]["secrets"])
        return save(new, "Connected by the demo")

    salesforce = connector("Salesforce (Northwind org)", "salesforce", "Accounts, contacts and opportunities.")
    hubspot = connector("HubSpot (marketing)", "hubspot", "Companies and deals of the marketing team.")
    zendesk = connector("Zendesk (support desk)", "zendesk", "The support team's tickets.")
    portal = connector("Customer portal (REST)", "rest", "Account health from the customer portal's API.")
    llm = connector(
        "Reply writer (OpenAI-compatible, llama3.1)", "model_openai", "A self-hosted LLM behind an OpenAI-style API."
    )
    outside = [salesforce, hubspot, zendesk, portal, llm]

    save(
        SourceDataset(
            connector=hubspot,
            name="HubSpot companies",
            table="companies",
            key_field="account_id",
            updated_at_field="hs_lastmodifieddate",
            freshness_sla=dt.timedelta(days=30),
            mode=SourceDataset.Mode.CACHED,
            sync_interval=dt.timedelta(minutes=15),
            quality_rules={"required": ["name"]},
        ),
        "Cached copy of a slow source",
    )
    salesforce_tasks = save(
        Destination(
            name="Salesforce task on the account",
            kind=Destination.Kind.WRITEBACK,
            connector=salesforce,
            config=reach["salesforce"]["destination"],
        ),
        "Write-back configured by the demo",
    )
    zendesk_comments = save(
        Destination(
            name="Internal comment on the Zendesk ticket",
            kind=Destination.Kind.WRITEBACK,
            connector=zendesk,
            config=reach["zendesk"]["destination"],
        ),
        "Write-back configured by the demo",
    )
    world.churn.destinations.add(salesforce_tasks)
    world.replies.destinations.add(zendesk_comments)
    world.replies.fallback_endpoint = llm
    save(world.replies, "Fallback model: the self-hosted LLM")

    integrator = Group.objects.get(name=roles.INTEGRATOR)
    governance = Group.objects.get(name=roles.GOVERNANCE)
    for each in outside:
        for codename in CODENAMES["connector"]:
            object_permission_grant(group=integrator, codename=codename, obj=each)
        object_permission_grant(group=governance, codename="view_connector", obj=each)
    return outside
