"""Domain services: every write goes through one of these, whichever door it came from
(REST API, studio pages, admin actions, the demo seeder, workers).

One module an area; callers import the package (`from runs import services`), which names
them all here."""

from runs.errors import Conflict, InvalidInput
from runs.services.accounts import (
    InvitationKey,
    membership_accept,
    membership_check_demotion,
    membership_invite,
    membership_remove,
    membership_set,
    token_authenticate,
    token_create,
    token_revoke,
    user_check_deletable,
    workspace_create,
)
from runs.services.archive import experiment_archive, experiment_restore
from runs.services.compute import (
    WORKER_KEY_PREFIX,
    compute_target_create,
    compute_target_delete,
    compute_target_update,
    compute_target_worker_key_rotate,
    runs_reap_stale,
    worker_heartbeat,
    worker_register,
    worker_set_current_run,
    worker_stop,
)
from runs.services.experiments import experiment_create, experiment_rename, experiment_set_tags
from runs.services.files import (
    INCOMING_STALE_SECONDS,
    StagedTree,
    run_file_write,
    run_files_compact,
    run_files_compact_task,
    run_files_delete,
    run_files_delete_all,
    run_files_join_tails,
    run_files_join_tails_task,
    run_files_place_tree,
    tree_staged,
)
from runs.services.logged_models import (
    logged_model_archive,
    logged_model_create,
    logged_model_finalize,
    logged_model_folder,
    logged_model_update,
)
from runs.services.metrics import BatchResult, run_log_batch, series_summarize
from runs.services.run_inputs import run_log_inputs, run_log_outputs
from runs.services.runs import (
    RunSpec,
    check_client_time,
    experiment_get_or_create,
    run_add_properties,
    run_cancel,
    run_check_deletable,
    run_create,
    run_create_children,
    run_delete,
    run_heartbeat,
    run_set_status,
    run_set_tags,
    run_update,
    transition_allowed,
)
from runs.services.submission import ARGUMENTS_PROPERTY, SCRIPT_PROPERTY, run_submit

__all__ = [
    # the errors services raise
    "Conflict",
    "InvalidInput",
    # accounts
    "InvitationKey",
    "membership_accept",
    "membership_check_demotion",
    "membership_invite",
    "membership_remove",
    "membership_set",
    "token_authenticate",
    "token_create",
    "token_revoke",
    "user_check_deletable",
    "workspace_create",
    # runs
    "RunSpec",
    "check_client_time",
    "experiment_get_or_create",
    "run_add_properties",
    "run_cancel",
    "run_check_deletable",
    "run_create",
    "run_create_children",
    "run_delete",
    "run_heartbeat",
    "run_set_status",
    "run_set_tags",
    "run_update",
    "transition_allowed",
    # experiments (archive: MLflow's delete_experiment), MLflow 3 logged models
    "experiment_archive",
    "experiment_restore",
    "experiment_create",
    "experiment_rename",
    "experiment_set_tags",
    "logged_model_archive",
    "logged_model_create",
    "logged_model_finalize",
    "logged_model_folder",
    "logged_model_update",
    "run_log_inputs",
    "run_log_outputs",
    # compute targets, workers, the reaper
    "WORKER_KEY_PREFIX",
    "compute_target_create",
    "compute_target_delete",
    "compute_target_update",
    "compute_target_worker_key_rotate",
    "runs_reap_stale",
    "worker_heartbeat",
    "worker_register",
    "worker_set_current_run",
    "worker_stop",
    # run files
    "INCOMING_STALE_SECONDS",
    "StagedTree",
    "run_file_write",
    "run_files_compact",
    "run_files_compact_task",
    "run_files_delete",
    "run_files_delete_all",
    "run_files_join_tails",
    "run_files_join_tails_task",
    "run_files_place_tree",
    "tree_staged",
    # metrics
    "series_summarize",
    "BatchResult",
    "run_log_batch",
    # submission
    "ARGUMENTS_PROPERTY",
    "SCRIPT_PROPERTY",
    "run_submit",
]
