from django.urls import path

from runs.api import views

app_name = "api"

urlpatterns = [
    path("auth/token", views.token_create, name="token-create"),
    path("auth/tokens", views.token_list, name="token-list"),
    path("auth/tokens/<int:token_id>", views.token_revoke, name="token-revoke"),
    path("me", views.me, name="me"),
    path("invitations/accept", views.invitation_accept, name="invitation-accept"),
    path("workspaces", views.workspace_list, name="workspace-list"),
    path("workspaces/<str:workspace>", views.workspace_detail, name="workspace-detail"),
    path("workspaces/<str:workspace>/members", views.member_list, name="member-list"),
    path(
        "workspaces/<str:workspace>/members/<str:username>",
        views.member_remove,
        name="member-remove",
    ),
    path("workspaces/<str:workspace>/experiments", views.experiment_list, name="experiment-list"),
    path(
        "workspaces/<str:workspace>/experiments/<str:experiment>",
        views.experiment_detail,
        name="experiment-detail",
    ),
    path(
        "workspaces/<str:workspace>/experiments/<str:experiment>/runs",
        views.run_create,
        name="run-create",
    ),
    path("workspaces/<str:workspace>/runs", views.run_list, name="run-list"),
    path("workspaces/<str:workspace>/runs/search", views.run_search, name="run-search"),
    path("workspaces/<str:workspace>/runs/manage", views.run_manage, name="run-manage"),
    path("runs/<str:run_id>", views.run_detail, name="run-detail"),
    path("runs/<str:run_id>/status", views.run_status, name="run-status"),
    path("runs/<str:run_id>/cancel", views.run_cancel, name="run-cancel"),
    path("runs/<str:run_id>/heartbeat", views.run_heartbeat, name="run-heartbeat"),
    path("runs/<str:run_id>/children", views.run_children, name="run-children"),
    path("runs/<str:run_id>/tags", views.run_tags, name="run-tags"),
    path("runs/<str:run_id>/properties", views.run_properties, name="run-properties"),
    path("runs/<str:run_id>/metrics", views.metric_list, name="metric-list"),
    path("runs/<str:run_id>/metrics/batch", views.metric_batch, name="metric-batch"),
    path("runs/<str:run_id>/metrics/values", views.metric_values, name="metric-values"),
    path("runs/<str:run_id>/metrics/history", views.metric_history, name="metric-history"),
    path("runs/<str:run_id>/metrics/series", views.metric_series, name="metric-series"),
    path("runs/<str:run_id>/files", views.file_list, name="file-list"),
    path("runs/<str:run_id>/files/<path:path>", views.file_detail, name="file-detail"),
    path(
        "workspaces/<str:workspace>/compute", views.compute_target_list, name="compute-target-list"
    ),
    path(
        "workspaces/<str:workspace>/compute/<str:name>",
        views.compute_target_detail,
        name="compute-target-detail",
    ),
    path(
        "workspaces/<str:workspace>/compute/<str:name>/worker-key",
        views.compute_target_worker_key,
        name="compute-target-worker-key",
    ),
    path(
        "workspaces/<str:workspace>/experiments/<str:experiment>/submit",
        views.run_submit,
        name="run-submit",
    ),
    path(
        "workspaces/<str:workspace>/alert-rules",
        views.alert_rule_list,
        name="alert-rule-list",
    ),
    path(
        "workspaces/<str:workspace>/alert-rules/<str:name>",
        views.alert_rule_detail,
        name="alert-rule-detail",
    ),
]
