"""Run-history objects as JSON. Plain functions: the shapes are fixed and these are hot."""

from typing import Any

from runs.links import portal_url
from runs.models import ApiToken, Experiment, Invitation, Membership, Run


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def run_json(run: Run, request=None) -> dict[str, Any]:
    # tags and properties come prefetched (selectors.with_run_details) or are loaded here.
    return {
        "run_id": run.run_id,
        "workspace": run.workspace.name,
        "experiment": run.experiment.name,
        "parent_id": run.parent.run_id if run.parent_id else None,
        "display_name": run.display_name,
        "description": run.description,
        "status": run.status,
        "run_type": run.run_type,
        "submitter": run.submitter.username if run.submitter_id else None,
        "compute_target": run.compute_target,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "error": {"code": run.error_code, "message": run.error_message}
        if run.error_code or run.error_message
        else None,
        "tags": {t.key: t.value for t in sorted(run.tags.all(), key=lambda t: t.pk)},
        "properties": {p.key: p.value for p in sorted(run.properties.all(), key=lambda p: p.pk)},
        "portal_url": portal_url(run, request),
    }


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    return {
        "name": experiment.name,
        "workspace": experiment.workspace.name,
        "created_at": _iso(experiment.created_at),
        "run_count": getattr(experiment, "run_count", None),
        "last_run_at": _iso(getattr(experiment, "last_run_at", None)),
    }


def membership_json(membership: Membership) -> dict[str, Any]:
    return {
        "name": membership.workspace.name,
        "role": membership.role,
        "created_at": _iso(membership.workspace.created_at),
    }


def member_json(membership: Membership) -> dict[str, Any]:
    return {"username": membership.user.username, "role": membership.role}


def invitation_json(invitation: Invitation, key: str) -> dict[str, Any]:
    return {
        "username": invitation.username,
        "role": invitation.role,
        "workspace": invitation.workspace.name,
        "invitation": key,
        "expires_at": _iso(invitation.expires_at),
    }


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": _iso(token.created_at),
        "last_used_at": _iso(token.last_used_at),
        "revoked_at": _iso(token.revoked_at),
    }


def compute_target_json(target, *, active: int | None = None, queued: int | None = None) -> dict:
    from runs.selectors.compute import target_queue_name

    return {
        "name": target.name,
        "capacity": target.capacity,
        "description": target.description,
        "queue_name": target_queue_name(target),
        "worker_key_prefix": target.worker_key_prefix or None,
        "created_at": _iso(target.created_at),
        "updated_at": _iso(target.updated_at),
        **({"active_runs": active} if active is not None else {}),
        **({"queued_runs": queued} if queued is not None else {}),
    }


def worker_json(worker) -> dict:
    from runs.selectors.compute import worker_is_alive

    return {
        "worker_id": worker.worker_id,
        "queue_name": worker.queue_name,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "alive": worker_is_alive(worker),
        "isolated": worker.isolated,
        "started_at": _iso(worker.started_at),
        "last_seen_at": _iso(worker.last_seen_at),
        "stopped_at": _iso(worker.stopped_at),
        # Only a run of the workspace being shown (compute_target_overview sets run_here): a
        # shared local worker busy with another workspace's run says only that it is busy.
        "current_run": run_here.run_id if (run_here := getattr(worker, "run_here", None)) else None,
        "busy_elsewhere": getattr(worker, "busy_elsewhere", False),
    }
