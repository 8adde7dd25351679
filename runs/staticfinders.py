"""Serves plotly.js from the plotly wheel as `vendor/plotly/plotly.min.js` (no CDN, no copy in
the repository). Only that one file: the wheel's folder also holds a 4.8 MB widget bundle and
datasets the studio never serves."""

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "vendor/plotly/plotly.min.js"


def _folder() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data"


class PlotlyFinder(BaseFinder):
    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path != PLOTLY_JS:
            return [] if find_all else None
        found = str(_folder() / "plotly.min.js")
        return [found] if find_all else found

    def list(self, ignore_patterns):
        storage = FileSystemStorage(location=str(_folder()))
        storage.prefix = "vendor/plotly"
        yield "plotly.min.js", storage
