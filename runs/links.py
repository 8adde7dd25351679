"""Links to studio pages that the domain layer hands out (alert e-mails and webhooks) as
well as the API: they live here, below both, so no domain module imports from runs.api."""

from django.conf import settings
from django.urls import reverse

from runs.models import Run


def portal_url(run: Run, request=None) -> str:
    """The run's studio page: absolute from RUNSTUDIO_PUBLIC_URL or the request, else a
    path."""
    path = reverse("runs:run-page", kwargs={"workspace": run.workspace.name, "run_id": run.run_id})
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL + path
    return request.build_absolute_uri(path) if request is not None else path
