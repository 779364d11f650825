import json
import secrets
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.audit.ledger import ledger_head_export, ledger_seal
from apps.core import clock
from apps.core.actors import Actor
from apps.governance.models import ControlPack
from apps.governance.pack_files import pack_slugs
from apps.governance.services import control_pack_load, use_case_checklist_apply
from apps.workflows.demo.history import simulate
from apps.workflows.demo.outside import connect_outside_systems
from apps.workflows.demo.world import build_world
from config import celery_app


class Command(BaseCommand):
    help = "Load the demo company and 90 days of activity (runs the real services on a simulated clock)."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when users already exist")
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off")
        parser.add_argument("--days", type=int, default=90)

    def handle(self, *args, if_empty, force, days, **options):
        if not settings.DEBUG and not force:
            raise CommandError("The demo creates accounts with a known password: refusing with DEBUG off (--force).")
        if days < 0 or days > 365:
            raise CommandError("--days must be between 0 and 365.")
        if get_user_model().objects.exists():
            if if_empty:
                self.stdout.write("Demo already loaded (users exist); skipping.")
                return
            raise CommandError("The database already has users; load the demo into an empty database.")
        password_file = settings.VAR_DIR / "demo_password"
        password = settings.DOORSTEP_DEMO_PASSWORD or secrets.token_urlsafe(12)
        started = time.monotonic()
        # Tasks run in-process while the history is replayed, so every step goes through the real services.
        celery_app.conf.task_always_eager = True
        try:
            with transaction.atomic():
                world = build_world(demo_dir=settings.DOORSTEP_DEMO_DIR, password=password, now=clock.now())
            counts = simulate(world, days=days, end=clock.now(), log=self.stdout.write)
        finally:
            celery_app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER
        if settings.DOORSTEP_DEMO_STANDINS_PORT:
            connected = connect_outside_systems(
                world, port=settings.DOORSTEP_DEMO_STANDINS_PORT, tls_dir=settings.VAR_DIR / "standins-tls"
            )
            self.stdout.write(
                f"Connected {len(connected)} outside systems (stand-ins on port "
                f"{settings.DOORSTEP_DEMO_STANDINS_PORT})."
            )
        self._checklists(world)
        call_command("rollup_rebuild", days=days + 1, stdout=self.stdout)
        self._schedule(world)
        # The demo's history is sealed and its head exported, so `audit_verify` holds from the first minute.
        ledger_seal(immediate=True)
        ledger_head_export()
        password_file.write_text(password)
        password_file.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo loaded in {time.monotonic() - started:.0f}s: {counts['runs']} runs, "
                f"{counts['reviewed']} reviews, {counts['feedback']} feedback events, "
                f"{counts['outcomes']} business outcomes."
            )
        )
        self.stdout.write(f"Accounts: admin, governance, reviewer, executive, integrator. Password: {password}")

    def _checklists(self, world):
        """The starter packs loaded, and the EU AI Act obligations applied to the churn use case."""
        admin = Actor(user=world.admin)
        for slug in pack_slugs():
            control_pack_load(actor=admin, slug=slug)
        use_case_checklist_apply(
            actor=admin, use_case=world.churn, pack=ControlPack.objects.get(slug="eu-ai-act-high-risk")
        )

    def _schedule(self, world):
        """Each use case runs every 15 minutes for a few subjects (beat → worker), so the demo stays alive."""
        every, _ = IntervalSchedule.objects.get_or_create(every=15, period=IntervalSchedule.MINUTES)
        for use_case, subjects in ((world.churn, ["ACC-0011", "ACC-0042"]), (world.replies, ["TCK-0007", "TCK-0019"])):
            PeriodicTask.objects.update_or_create(
                name=f"Run {use_case.slug}",
                defaults={
                    "interval": every,
                    "task": "apps.workflows.tasks.use_case_schedule_task",
                    "args": json.dumps([use_case.pk, subjects]),
                },
            )
