"""`python -m django runstudio_user create --username U [--superuser] [--password-stdin]`:
what `runstudio user create` runs (the CLI imports no Django, so it starts this command)."""

import getpass
import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.utils import DatabaseError

from runs.errors import ServiceError
from runs.services.users import user_create


def _database() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return str(db["NAME"])
    return f"{db['ENGINE'].rsplit('.', 1)[-1]}://{db.get('HOST') or 'localhost'}/{db['NAME']}"


class Command(BaseCommand):
    help = "Create a user who can sign in to the studio and get API tokens."
    # The checks would open the database first, and SQLite would create an empty file where
    # the user pointed at the wrong folder; the command checks for the database itself.
    requires_system_checks = []

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="create a user")
        create.add_argument("--username", "-u", required=True)
        create.add_argument("--email", default="")
        create.add_argument("--superuser", action="store_true", help="also staff and admin")
        create.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )

    def handle(self, *args, **options):
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = getpass.getpass(f"Password for {options['username']}: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("the passwords differ; run the command again.")
        else:
            raise CommandError(
                "no terminal to ask for a password: pipe it in with --password-stdin."
            )
        db = settings.DATABASES["default"]
        missing = db["ENGINE"].endswith("sqlite3") and not Path(db["NAME"]).exists()
        try:
            # (An SQLite file is checked first: connecting would create an empty one.)
            if missing or "runs_run" not in connection.introspection.table_names():
                raise CommandError(
                    f"no Runstudio database at {_database()}: point RUNSTUDIO_DATA_DIR (or "
                    "DATABASE_URL) at the one `runstudio serve` uses, or start the server once "
                    "to create it."
                )
            user = user_create(
                username=options["username"],
                password=password,
                superuser=options["superuser"],
                email=options["email"],
            )
        except ServiceError as e:
            raise CommandError(e.message) from None
        except DatabaseError as e:
            raise CommandError(f"the database at {_database()} refused: {e}") from None
        self.stdout.write(
            json.dumps(
                {
                    "username": user.get_username(),
                    "superuser": user.is_superuser,
                    "database": _database(),
                    "next": "sign in at the studio, or `runstudio login --url URL "
                    f"--username {user.get_username()}` for the CLI and SDK",
                },
                indent=2,
            )
        )
