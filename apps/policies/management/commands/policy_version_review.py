from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.policies.models import Approval, PolicyVersion
from apps.policies.services import policy_version_review


class Command(BaseCommand):
    help = "Approve or reject a policy version as a user (the same rules as the page and the API)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # --version names the policy version here; it replaces Django's "print the version" option.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--version", required=True, type=int, dest="version_id", help="PolicyVersion id")
        parser.add_argument("--user", required=True, help="Username of the reviewer")
        parser.add_argument("--decision", required=True, choices=Approval.Decision.values)
        parser.add_argument("--comment", required=True)

    def handle(self, *args, version_id, user, decision, comment, **options):
        try:
            reviewer = get_user_model().objects.get(username=user, is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No active user named {user!r}.") from None
        try:
            version = PolicyVersion.objects.get(pk=version_id)
        except PolicyVersion.DoesNotExist:
            raise CommandError(f"No policy version {version_id}.") from None
        try:
            version = policy_version_review(
                actor=Actor.for_system("policy_version_review", on_behalf_of=reviewer),
                version=version,
                decision=decision,
                comment=comment,
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
        self.stdout.write(f"{version}: {version.get_state_display()}")
