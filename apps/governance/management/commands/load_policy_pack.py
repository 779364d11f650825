from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.governance.pack_files import pack_slugs
from apps.governance.services import control_pack_load


class Command(BaseCommand):
    help = "Load (or update) starter policy packs from apps/governance/packs/; loading again changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", metavar="slug", help=f"Pack(s) to load: {', '.join(pack_slugs())}")
        parser.add_argument("--all", dest="all_packs", action="store_true", help="Load every shipped pack")
        parser.add_argument(
            "--as", dest="username", help="Record the change as this user (a governance officer or admin)"
        )

    def handle(self, *args, slugs, all_packs, username, **options):
        if all_packs == bool(slugs):
            raise CommandError("Name the pack(s) to load, or pass --all (not both).")
        actor = Actor.for_system("load_policy_pack")
        if username:
            try:
                user = get_user_model().objects.get(username=username)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user named {username!r}.") from None
            actor = Actor.for_system("load_policy_pack", on_behalf_of=user)
        for slug in pack_slugs() if all_packs else slugs:
            try:
                result = control_pack_load(actor=actor, slug=slug)
            except ServiceError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(result.summary)
