import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.core import clock
from apps.reporting.services import rollup_rebuild
from apps.workflows.models import UseCase


class Command(BaseCommand):
    help = "Recompute the daily and hourly ROI rollups and rejection counts of a day range from the facts."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="The last N days, today included (default 90)")
        parser.add_argument("--start", type=dt.date.fromisoformat, help="First day, YYYY-MM-DD")
        parser.add_argument("--end", type=dt.date.fromisoformat, help="Last day, YYYY-MM-DD (default today)")
        parser.add_argument(
            "--use-case", action="append", dest="slugs", metavar="SLUG", help="Only this use case (repeatable)"
        )

    def handle(self, *args, days=None, start=None, end=None, slugs=None, **options):
        if days is not None and start is not None:
            raise CommandError("Give --days or --start, not both.")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        end = end or timezone.localdate(clock.now())
        start = start or end - dt.timedelta(days=(days or 90) - 1)
        if end < start:
            raise CommandError("--end is before --start.")
        use_case_ids = None
        if slugs:
            found = dict(UseCase.objects.filter(slug__in=slugs).values_list("slug", "pk"))
            missing = sorted(set(slugs) - set(found))
            if missing:
                raise CommandError(f"Unknown use case: {', '.join(missing)}")
            use_case_ids = list(found.values())
        rows = rollup_rebuild(start=start, end=end, use_case_ids=use_case_ids)
        scope = ", ".join(sorted(slugs)) if slugs else "all use cases"
        span = (end - start).days + 1
        self.stdout.write(f"Rebuilt {rows} daily rollup rows for {scope}, {start} to {end} ({span} days).")
