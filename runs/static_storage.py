"""Static files with content hashes in their names once collected (`runstudio serve` runs
collectstatic), so whitenoise serves them cached for a year (`immutable`): plotly.js (4.8 MB)
is fetched once per version, not every 60 s. Before collectstatic (tests, `manage.py
runserver`, where whitenoise's finders serve the plain files) there is no manifest and the
plain names are used."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StudioStaticStorage(CompressedManifestStaticFilesStorage):
    manifest_strict = False

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:  # nothing collected: the finders serve the plain names
            return name
        try:
            return super().stored_name(name)
        except ValueError:  # a file collected after the manifest was written
            return name
