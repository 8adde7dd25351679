from django.core.management.base import BaseCommand

from runs.demo import DEMO_PASSWORD, DEMO_USERNAME, DEMO_WORKSPACE, seed_demo


class Command(BaseCommand):
    help = "Seeds a demo user, workspace and runs into an empty database."

    def handle(self, *args, **options) -> None:
        if seed_demo():
            self.stdout.write(
                f"Demo data seeded: workspace {DEMO_WORKSPACE!r}. Sign in as "
                f"{DEMO_USERNAME!r} with password {DEMO_PASSWORD!r}."
            )
        else:
            self.stdout.write("The database already holds workspaces; no demo data added.")
