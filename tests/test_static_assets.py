"""Static files: hashed names once collected (cached for a year by whitenoise), plain names
before (tests, runserver) — runs/static_storage.py."""

import re

from django.core.management import call_command

from runs.static_storage import StudioStaticStorage


def test_collected_files_get_hashed_names_and_uncollected_ones_keep_theirs(settings, tmp_path):
    plain = StudioStaticStorage(location=str(tmp_path / "none"))
    assert plain.stored_name("vendor/plotly/plotly.min.js") == "vendor/plotly/plotly.min.js"

    settings.STATIC_ROOT = str(tmp_path / "static")
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "runs.static_storage.StudioStaticStorage"},
    }
    call_command("collectstatic", "--noinput", "--verbosity", "0")
    collected = StudioStaticStorage(location=settings.STATIC_ROOT)
    hashed = collected.stored_name("vendor/plotly/plotly.min.js")
    assert re.fullmatch(r"vendor/plotly/plotly\.min\.[0-9a-f]{12}\.js", hashed)
    assert (tmp_path / "static" / hashed).exists()
    assert re.fullmatch(r"js/charts\.[0-9a-f]{12}\.js", collected.stored_name("js/charts.js"))
