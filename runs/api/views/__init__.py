"""REST API views: load through runs.access, validate, call one service or selector, respond.

One module an area (helpers they share in common.py); runs/api/urls.py reaches every view
through this package."""

from runs.api.views.accounts import (
    invitation_accept,
    me,
    member_list,
    member_remove,
    token_create,
    token_list,
    token_revoke,
    workspace_detail,
    workspace_list,
)
from runs.api.views.alerts import alert_rule_detail, alert_rule_list
from runs.api.views.compute import (
    compute_target_detail,
    compute_target_list,
    compute_target_worker_key,
)
from runs.api.views.files import file_detail, file_list
from runs.api.views.metrics import (
    metric_batch,
    metric_history,
    metric_list,
    metric_series,
    metric_values,
)
from runs.api.views.run_management import run_manage
from runs.api.views.runs import (
    experiment_detail,
    experiment_list,
    run_cancel,
    run_children,
    run_create,
    run_detail,
    run_heartbeat,
    run_list,
    run_properties,
    run_search,
    run_status,
    run_submit,
    run_tags,
)

__all__ = [
    # accounts
    "invitation_accept",
    "me",
    "member_list",
    "member_remove",
    "token_create",
    "token_list",
    "token_revoke",
    "workspace_detail",
    "workspace_list",
    # runs
    "experiment_detail",
    "experiment_list",
    "run_cancel",
    "run_children",
    "run_create",
    "run_detail",
    "run_heartbeat",
    "run_list",
    "run_manage",
    "run_properties",
    "run_search",
    "run_status",
    "run_submit",
    "run_tags",
    # metrics
    "metric_batch",
    "metric_history",
    "metric_list",
    "metric_series",
    "metric_values",
    # files
    "file_detail",
    "file_list",
    # compute
    "compute_target_detail",
    "compute_target_list",
    "compute_target_worker_key",
    # alerts
    "alert_rule_detail",
    "alert_rule_list",
]
