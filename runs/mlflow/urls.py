"""Mounted at `/mlflow/`: `/mlflow/<workspace>/api/2.0/…`, or `/mlflow/api/2.0/…` with the
X-MLFLOW-WORKSPACE header (MLflow's own workspace selection). The header form is matched
first, so a workspace named `api` is reached through the header."""

from django.urls import path, re_path

from runs.mlflow import views

app_name = "mlflow"

# `(?:/)*` first (`/*` would make Django warn): a tracking URI written with a trailing slash
# makes the client ask for `lab//api/…`.
_TRACKING = r"(?:/)*api/2\.0/mlflow/(?P<path>.+)$"
_ARTIFACTS = r"(?:/)*api/2\.0/mlflow-artifacts/artifacts(?:/(?P<path>.*))?$"

_INFO = r"(?:/)*api/3\.0/mlflow/server-(?:info|features)/?$"

urlpatterns = [
    re_path(rf"^{_INFO}", views.server_info, name="server-info-header"),
    re_path(rf"^(?P<workspace>[^/]+)/{_INFO}", views.server_info, name="server-info"),
    re_path(rf"^{_TRACKING}", views.tracking_api, name="tracking-header"),
    re_path(rf"^{_ARTIFACTS}", views.artifacts_api, name="artifacts-header"),
    path("", views.run_link, name="link-header"),
    re_path(rf"^(?P<workspace>[^/]+)/{_TRACKING}", views.tracking_api, name="tracking"),
    re_path(rf"^(?P<workspace>[^/]+)/{_ARTIFACTS}", views.artifacts_api, name="artifacts"),
    path("<str:workspace>/", views.run_link, name="link"),
]
