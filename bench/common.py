"""What the benchmarks that start their own studio share: a data directory migrated with a
`bench` superuser, ready for `runstudio serve`."""

import os
import subprocess
import sys
from pathlib import Path

PYTHON = sys.executable
PASSWORD = "bench-password"  # noqa: S105 - a throwaway local server's


def prepared_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a studio on `data_dir`, after migrating it and creating the `bench`
    superuser (password PASSWORD)."""
    env = {**os.environ, **extra, "RUNSTUDIO_DATA_DIR": str(data_dir)}
    env.update(
        DJANGO_SETTINGS_MODULE="studio.settings",
        DJANGO_SUPERUSER_USERNAME="bench",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        DJANGO_SUPERUSER_EMAIL="bench@example.com",
    )
    subprocess.run([PYTHON, "-m", "django", "migrate", "--noinput", "-v", "0"], env=env, check=True)
    subprocess.run(
        [PYTHON, "-m", "django", "createsuperuser", "--noinput"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env
