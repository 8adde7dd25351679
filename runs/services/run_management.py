"""Run management from any door (the studio's list and run page, the REST API, the CLI through
it): archive (MLflow's soft delete), restore, delete for good, tag, untag, cancel — one run or
many in one call. The roles each needs live here (ACTION_ROLES); every action is recorded as a
RunActivity row per named run.

An archive takes the run's descendants along (a sweep is archived with its children) at the same
moment; a restore brings back the run and the descendants archived at that moment, not those
archived on their own before. Delete removes each run's tree with its files (run_delete)."""

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from runs import limits
from runs.errors import Forbidden, InvalidInput, NotFound
from runs.models import (
    TERMINAL_STATUSES,
    Membership,
    Role,
    Run,
    RunAction,
    RunActivity,
    RunTag,
    Workspace,
)
from runs.services.runs import _check_kv, run_cancel, run_check_deletable, run_delete
from runs.validation import check_name

ACTION_ROLES: dict[str, str] = {
    RunAction.ARCHIVE: Role.CONTRIBUTOR,
    RunAction.RESTORE: Role.CONTRIBUTOR,
    RunAction.TAG: Role.CONTRIBUTOR,
    RunAction.UNTAG: Role.CONTRIBUTOR,
    RunAction.CANCEL: Role.CONTRIBUTOR,
    RunAction.DELETE: Role.OWNER,
}


@dataclass
class BulkResult:
    action: str
    runs: list[str]  # the run ids named, in the order given
    affected: int  # runs changed, descendants included
    skipped: list[str] = field(default_factory=list)  # named but nothing to do (e.g. finished)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "runs": self.runs,
            "affected": self.affected,
            "skipped": self.skipped,
        }


def run_action_check(*, action: Any) -> str:
    """The action's name, or a 400 naming the field and the actions there are."""
    if not isinstance(action, str) or action not in ACTION_ROLES:
        raise InvalidInput(
            f"action: {action!r} is not an action; use one of {', '.join(ACTION_ROLES)}.",
            field="action",
        )
    return action


def _run_ids(run_ids: Any) -> list[str]:
    if not isinstance(run_ids, list | tuple) or not run_ids:
        raise InvalidInput("runs: give a list of one or more run ids.", field="runs")
    if len(run_ids) > limits.RUN_BULK_MAX:
        raise InvalidInput(
            f"runs: {len(run_ids)} run ids; the limit is {limits.RUN_BULK_MAX} per request "
            "(RUN_BULK_MAX). Split them into several requests.",
            field="runs",
        )
    ids: list[str] = []
    for index, run_id in enumerate(run_ids):
        if not isinstance(run_id, str) or not run_id or len(run_id) > 255 or "\x00" in run_id:
            raise InvalidInput(f"runs[{index}]: a run id is a non-empty string.", field="runs")
        if run_id not in ids:
            ids.append(run_id)
    return ids


def _runs_of(workspace: Workspace, run_ids: list[str]) -> list[Run]:
    """The named runs of the workspace, in the order named. A run id that is not there — in
    another workspace or nowhere — is the same 404."""
    found = {r.run_id: r for r in Run.objects.filter(workspace=workspace, run_id__in=run_ids)}
    for run_id in run_ids:
        if run_id not in found:
            raise NotFound(f"No run with id {run_id!r}.", field="runs")
    return [found[run_id] for run_id in run_ids]


def _descendants(pks: list[int]) -> dict[int, int]:
    """{descendant pk: the given run it is under}, one query per level."""
    found: dict[int, int] = {}
    level = {pk: pk for pk in pks}
    while level:
        rows = Run.objects.filter(parent_id__in=list(level)).values_list("pk", "parent_id")
        level = {pk: level[parent] for pk, parent in rows if pk not in found}
        found |= level
    return found


def _record(
    workspace: Workspace, runs: list[Run], action: str, by: AbstractBaseUser, detail: Any
) -> None:
    """One row per named run; `detail` is a dict, or a function of the run giving one."""
    RunActivity.objects.bulk_create(
        [
            RunActivity(
                workspace=workspace,
                run_id=r.run_id,
                action=action,
                by=by,
                detail=detail(r) if callable(detail) else detail,
            )
            for r in runs
        ]
    )


def run_bulk_apply(
    *,
    membership: Membership,
    action: str,
    run_ids: Any,
    tags: Any = None,
    keys: Any = None,
) -> BulkResult:
    """Applies one management action to the named runs of the membership's workspace, as the
    membership's user. Contributors archive, restore, tag, untag and cancel; owners also
    delete for good (a 403 otherwise, before anything changes)."""
    action = run_action_check(action=action)
    role = ACTION_ROLES[action]
    if not membership.allows(role):
        raise Forbidden(
            f"You are a {membership.role} of workspace {membership.workspace.name!r}; "
            f"to {action} runs needs the {role} role."
        )
    workspace, by = membership.workspace, membership.user
    runs = _runs_of(workspace, _run_ids(run_ids))
    if action == RunAction.ARCHIVE:
        return _archive(workspace, runs, by)
    if action == RunAction.RESTORE:
        return _restore(workspace, runs, by)
    if action == RunAction.DELETE:
        return _delete(workspace, runs, by)
    if action == RunAction.TAG:
        return _tag(workspace, runs, by, tags)
    if action == RunAction.UNTAG:
        return _untag(workspace, runs, by, keys)
    return _cancel(workspace, runs, by)


@transaction.atomic
def _archive(workspace: Workspace, runs: list[Run], by) -> BulkResult:
    now = timezone.now()
    live = [r for r in runs if r.archived_at is None]
    pks = [r.pk for r in live]
    below = {
        pk: root
        for pk, root in _descendants(pks).items()
        if pk not in pks  # a named run under another named run counts once, as itself
    }
    live_below = set(
        Run.objects.filter(pk__in=list(below), archived_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    affected = Run.objects.filter(pk__in=pks + list(live_below), archived_at__isnull=True).update(
        archived_at=now
    )
    counts = {pk: 0 for pk in pks}
    for pk in live_below:
        counts[below[pk]] += 1
    _record(workspace, live, RunAction.ARCHIVE, by, lambda r: {"with_descendants": counts[r.pk]})
    skipped = [r.run_id for r in runs if r.archived_at is not None]
    return BulkResult(RunAction.ARCHIVE, [r.run_id for r in runs], affected, skipped)


@transaction.atomic
def _restore(workspace: Workspace, runs: list[Run], by) -> BulkResult:
    archived = [r for r in runs if r.archived_at is not None]
    # Only what was archived with a run comes back with it (the same moment): a child archived
    # on its own earlier stays archived. One query per tree level, one update per moment (a
    # bulk archive has one).
    moment = {r.pk: r.archived_at for r in archived}
    by_moment: dict = {}
    for pk, root in [(r.pk, r.pk) for r in archived] + list(_descendants(list(moment)).items()):
        by_moment.setdefault(moment[root], []).append(pk)
    affected = 0
    for at, pks in by_moment.items():
        affected += Run.objects.filter(pk__in=pks, archived_at=at).update(archived_at=None)
    _record(workspace, archived, RunAction.RESTORE, by, {})
    skipped = [r.run_id for r in runs if r.archived_at is None]
    return BulkResult(RunAction.RESTORE, [r.run_id for r in runs], affected, skipped)


def _delete(workspace: Workspace, runs: list[Run], by) -> BulkResult:
    # Every tree is checked before any file goes: one run on a worker refuses the whole call.
    for run in runs:
        run_check_deletable(run=run)
    affected, deleted = 0, []
    for run in runs:
        if not Run.objects.filter(pk=run.pk).exists():
            continue  # went with an ancestor named earlier in the list
        affected += run_delete(run=run)
        deleted.append(run)
    _record(workspace, deleted, RunAction.DELETE, by, {})
    return BulkResult(RunAction.DELETE, [r.run_id for r in runs], affected)


@transaction.atomic
def _tag(workspace: Workspace, runs: list[Run], by, tags: Any) -> BulkResult:
    checked = _check_kv({} if tags is None else tags, field="tags", tags=True)
    if not checked:
        raise InvalidInput("tags: give at least one tag, {key: value or null}.", field="tags")
    if len(checked) > limits.TAGS_PER_REQUEST:
        raise InvalidInput(
            f"tags: {len(checked)} tags; the limit is {limits.TAGS_PER_REQUEST} per request "
            "(TAGS_PER_REQUEST).",
            field="tags",
        )
    if len(checked) * len(runs) > limits.RUN_BULK_TAGS_MAX:
        raise InvalidInput(
            f"tags: {len(checked)} tags on {len(runs)} runs is {len(checked) * len(runs)} tag "
            f"writes; the limit is {limits.RUN_BULK_TAGS_MAX} (RUN_BULK_TAGS_MAX). Tag fewer "
            "runs at a time.",
            field="tags",
        )
    RunTag.objects.bulk_create(
        [RunTag(run=r, key=k, value=v) for r in runs for k, v in checked.items()],
        update_conflicts=True,
        unique_fields=["run", "key"],
        update_fields=["value"],
    )
    _record(workspace, runs, RunAction.TAG, by, {"tags": checked})
    return BulkResult(RunAction.TAG, [r.run_id for r in runs], len(runs))


@transaction.atomic
def _untag(workspace: Workspace, runs: list[Run], by, keys: Any) -> BulkResult:
    if not isinstance(keys, list | tuple) or not keys:
        raise InvalidInput("keys: give a list of one or more tag keys.", field="keys")
    if len(keys) > limits.TAGS_PER_REQUEST:
        raise InvalidInput(
            f"keys: {len(keys)} keys; the limit is {limits.TAGS_PER_REQUEST} per request "
            "(TAGS_PER_REQUEST).",
            field="keys",
        )
    for index, key in enumerate(keys):
        check_name(key, field=f"keys[{index}]", what="key")
    RunTag.objects.filter(run__in=runs, key__in=list(keys)).delete()
    _record(workspace, runs, RunAction.UNTAG, by, {"removed": list(keys)})
    return BulkResult(RunAction.UNTAG, [r.run_id for r in runs], len(runs))


def _cancel(workspace: Workspace, runs: list[Run], by) -> BulkResult:
    live = [r for r in runs if r.status not in TERMINAL_STATUSES]
    for run in live:
        run_cancel(run=run, by=by)
    _record(workspace, live, RunAction.CANCEL, by, {})
    skipped = [r.run_id for r in runs if r.status in TERMINAL_STATUSES]
    return BulkResult(RunAction.CANCEL, [r.run_id for r in runs], len(live), skipped)
