from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.permissions.services import api_key_create
from apps.workflows.models import UseCase


class Command(BaseCommand):
    help = "Create an API key for a user and print it once."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username the key acts for")
        parser.add_argument("--name", required=True, help="A name to recognise the key by")
        parser.add_argument("--scope", action="append", dest="scopes", default=[], help="Repeat for several scopes")
        parser.add_argument(
            "--use-case",
            action="append",
            dest="use_cases",
            default=[],
            help="Slug of a use case to limit the key to; repeat for several (none: every use case the user may see)",
        )

    def handle(self, *args, user, name, scopes, use_cases, **options):
        try:
            owner = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {user!r}.") from None
        found = {use_case.slug: use_case for use_case in UseCase.objects.filter(slug__in=use_cases)}
        if missing := sorted(set(use_cases) - found.keys()):
            raise CommandError(f"use_cases: no use case with the slug(s) {', '.join(missing)}.")
        try:
            _, raw = api_key_create(
                actor=Actor.for_system("create_api_key", on_behalf_of=owner),
                user=owner,
                name=name,
                scopes=scopes,
                use_cases=found.values(),
            )
        except ServiceError as exc:
            raise CommandError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
        self.stdout.write(raw)
