"""Links to studio pages that the domain layer hands out (alert e-mails and webhooks) as
well as the API: they live here, below both, so no domain module imports from runs.api."""

from django.conf import settings
from django.urls import reverse

from runs.models import Run


def studio_url(request=None) -> str:
    """The address people and scripts reach the studio by, without a trailing slash:
    RUNSTUDIO_PUBLIC_URL, else the request's own scheme and host, else the URL this process's
    scripts call back. A worker on another host is told to use it (`--server-url`): its own
    default, 127.0.0.1:8000, is the worker host itself."""
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return settings.RUNSTUDIO_SERVER_URL.rstrip("/")


def portal_url(run: Run, request=None) -> str:
    """The run's studio page: absolute from RUNSTUDIO_PUBLIC_URL or the request, else a
    path."""
    path = reverse("runs:run-page", kwargs={"workspace": run.workspace.name, "run_id": run.run_id})
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL + path
    return request.build_absolute_uri(path) if request is not None else path
