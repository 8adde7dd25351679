"""The services and storage called directly: the rules every door shares."""

import hashlib
import io
import math
from datetime import timedelta

import pytest
from django.utils import timezone

from runs import limits, points, services, storage
from runs.errors import Conflict, InvalidInput, NotFound, TooLarge
from runs.models import (
    ApiToken,
    Membership,
    MetricBatch,
    MetricSeries,
    Role,
    Run,
    RunProperty,
    RunStatus,
    RunTag,
    StatusEvent,
)
from runs.services import RunSpec, transition_allowed

S = RunStatus


# ---------------------------------------------------------------------------------------------
# Workspaces, members and tokens


def test_a_new_workspace_has_its_creator_as_owner(cast):
    workspace = services.workspace_create(name="w.1_x-y", owner=cast.reader.user)

    assert Membership.objects.get(workspace=workspace).role == Role.OWNER


def test_a_workspace_name_is_taken_once(cast):
    with pytest.raises(Conflict) as caught:
        services.workspace_create(name="lab", owner=cast.outsider.user)

    assert caught.value.field == "name"
    assert Membership.objects.filter(workspace__name="lab").count() == 3


def test_the_last_owner_cannot_leave(cast):
    with pytest.raises(Conflict):
        services.membership_remove(workspace=cast.workspace, user=cast.owner.user)

    assert Membership.objects.filter(workspace=cast.workspace, role=Role.OWNER).count() == 1


def test_a_member_who_is_not_an_owner_can_be_removed(cast):
    services.membership_remove(workspace=cast.workspace, user=cast.reader.user)

    assert not Membership.objects.filter(workspace=cast.workspace, user=cast.reader.user).exists()


def test_an_unknown_role_is_refused(cast):
    with pytest.raises(InvalidInput) as caught:
        services.membership_set(workspace=cast.workspace, user=cast.outsider.user, role="admin")

    assert caught.value.field == "role"


def test_a_token_key_is_returned_once_and_only_its_hash_is_kept(cast):
    token, key = services.token_create(user=cast.reader.user, name="ci")

    assert key.startswith("rs_") and len(key) == 3 + 43
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert not ApiToken.objects.filter(key_hash=key).exists()
    assert not ApiToken.objects.filter(prefix=key).exists()
    assert services.token_authenticate(key=key) == token


def test_a_revoked_token_or_an_inactive_user_does_not_authenticate(cast):
    token, key = services.token_create(user=cast.reader.user)
    other, other_key = services.token_create(user=cast.outsider.user)

    services.token_revoke(token=token)
    cast.outsider.user.is_active = False
    cast.outsider.user.save()

    assert services.token_authenticate(key=key) is None
    assert services.token_authenticate(key=other_key) is None
    assert services.token_authenticate(key="rs_unknown") is None


def test_a_token_stamps_its_last_use_at_most_once_a_minute(cast):
    token, key = services.token_create(user=cast.reader.user)
    services.token_authenticate(key=key)
    first = ApiToken.objects.get(pk=token.pk).last_used_at

    services.token_authenticate(key=key)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    services.token_authenticate(key=key)
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first - timedelta(seconds=1)


# ---------------------------------------------------------------------------------------------
# Runs


def test_an_experiment_is_got_or_created(cast):
    first, created = services.experiment_get_or_create(workspace=cast.workspace, name="e")
    again, created_again = services.experiment_get_or_create(workspace=cast.workspace, name="e")

    assert (created, created_again) == (True, False)
    assert first == again


def test_a_run_spec_names_the_field_it_refuses_with_the_callers_prefix():
    with pytest.raises(InvalidInput) as caught:
        RunSpec.from_input({"tags": {"ok": "1", "x" * 256: "v"}}, field="runs[2].")

    assert caught.value.field == f"runs[2].tags.{'x' * 256}"


def test_a_run_spec_turns_non_string_values_into_text():
    spec = RunSpec.from_input({"tags": {"n": 1, "b": None}, "properties": {"seed": 42}})

    assert spec.tags == {"n": "1", "b": None}
    assert spec.properties == {"seed": "42"}


def test_a_parent_from_another_workspace_is_refused(cast, make_run):
    elsewhere = services.workspace_create(name="w2", owner=cast.owner.user)
    exp, _ = services.experiment_get_or_create(workspace=elsewhere, name="exp")
    foreign = services.run_create(experiment=exp, spec=RunSpec(), submitter=cast.owner.user)
    home_exp, _ = services.experiment_get_or_create(workspace=cast.workspace, name="exp")

    with pytest.raises(InvalidInput) as caught:
        services.run_create(
            experiment=home_exp, spec=RunSpec(), submitter=cast.owner.user, parent=foreign
        )

    assert caught.value.field == "parent"
    assert Run.objects.count() == 1


def test_run_ids_are_unique_and_start_with_the_experiment(cast, make_run):
    runs = [make_run("my-exp") for _ in range(20)]

    assert len({r.run_id for r in runs}) == 20
    assert all(r.run_id.startswith("my-exp_") for r in runs)


def test_tags_are_set_and_removed_in_one_step(cast, make_run):
    run = make_run(tags={"a": "1", "b": "2"})

    services.run_set_tags(run=run, set_tags={"a": "changed", "c": None}, remove=["b", "absent"])

    assert dict(RunTag.objects.filter(run=run).values_list("key", "value")) == {
        "a": "changed",
        "c": None,
    }


def test_a_bad_tag_refuses_the_whole_change(cast, make_run):
    run = make_run(tags={"a": "1"})

    with pytest.raises(InvalidInput) as caught:
        services.run_set_tags(run=run, set_tags={"b": "2"}, remove=["a", ""])

    assert caught.value.field == "remove[1]"
    assert dict(RunTag.objects.filter(run=run).values_list("key", "value")) == {"a": "1"}


def test_a_tag_value_over_the_limit_is_refused(cast, make_run):
    run = make_run()

    with pytest.raises(InvalidInput) as caught:
        services.run_set_tags(run=run, set_tags={"k": "v" * (limits.TAG_VALUE_MAX_LENGTH + 1)})

    assert caught.value.field == "set.k"


def test_a_property_keeps_its_first_value(cast, make_run):
    run = make_run(properties={"seed": "1"})

    services.run_add_properties(run=run, properties={"seed": "1", "data": "v1"})
    with pytest.raises(Conflict) as caught:
        services.run_add_properties(run=run, properties={"other": "x", "seed": 2})

    assert caught.value.code == "property_immutable"
    assert "'seed'" in caught.value.message
    assert "'1'" in caught.value.message and "'2'" in caught.value.message
    assert dict(RunProperty.objects.filter(run=run).values_list("key", "value")) == {
        "seed": "1",
        "data": "v1",
    }


# ---------------------------------------------------------------------------------------------
# Status lifecycle


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.NOT_STARTED, S.QUEUED),
        (S.NOT_STARTED, S.RUNNING),
        (S.NOT_STARTED, S.COMPLETED),
        (S.QUEUED, S.PREPARING),
        (S.PREPARING, S.RUNNING),
        (S.RUNNING, S.FINALIZING),
        (S.RUNNING, S.COMPLETED),
        (S.FINALIZING, S.COMPLETED),
        (S.NOT_STARTED, S.FAILED),
        (S.RUNNING, S.FAILED),
        (S.QUEUED, S.CANCEL_REQUESTED),
        (S.RUNNING, S.CANCEL_REQUESTED),
        (S.RUNNING, S.CANCELED),
        (S.CANCEL_REQUESTED, S.CANCELED),
        (S.CANCEL_REQUESTED, S.FAILED),
    ],
)
def test_allowed_transitions(current, new):
    assert transition_allowed(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.RUNNING, S.QUEUED),
        (S.RUNNING, S.NOT_STARTED),
        (S.FINALIZING, S.RUNNING),
        (S.CANCEL_REQUESTED, S.COMPLETED),
        (S.CANCEL_REQUESTED, S.RUNNING),
        (S.COMPLETED, S.RUNNING),
        (S.COMPLETED, S.FAILED),
        (S.COMPLETED, S.CANCELED),
        (S.FAILED, S.COMPLETED),
        (S.CANCELED, S.COMPLETED),
        (S.CANCELED, S.FAILED),
        (S.CANCELED, S.CANCEL_REQUESTED),
    ],
)
def test_refused_transitions(current, new):
    assert not transition_allowed(current, new)


def test_a_status_change_is_recorded_with_who_and_why(cast, make_run):
    run = make_run(status=S.QUEUED)

    services.run_set_status(run=run, status=S.RUNNING, by=cast.owner.user, reason="picked up")

    event = StatusEvent.objects.filter(run=run).last()
    assert (event.from_status, event.to_status) == (S.QUEUED, S.RUNNING)
    assert (event.by, event.reason) == (cast.owner.user, "picked up")


def test_a_run_keeps_its_first_start_time(cast, make_run):
    run = make_run()
    started = run.started_at

    services.run_set_status(run=run, status=S.FINALIZING)
    updated = services.run_set_status(run=run, status=S.COMPLETED)

    assert updated.started_at == started
    assert updated.ended_at >= started


def test_a_late_complete_after_cancel_does_not_revive(cast, make_run):
    run = make_run()
    services.run_set_status(run=run, status=S.CANCEL_REQUESTED)
    services.run_set_status(run=run, status=S.CANCELED)
    ended = Run.objects.get(pk=run.pk).ended_at

    with pytest.raises(Conflict) as caught:
        services.run_set_status(run=run, status=S.COMPLETED)

    assert caught.value.code == "invalid_transition"
    assert "Canceled" in caught.value.message
    after = Run.objects.get(pk=run.pk)
    assert (after.status, after.ended_at) == (S.CANCELED, ended)


def test_failing_keeps_the_error(cast, make_run):
    run = make_run()

    services.run_set_status(
        run=run, status=S.FAILED, error_code="UserError", error_message="ValueError: bad"
    )

    run.refresh_from_db()
    assert (run.error_code, run.error_message) == ("UserError", "ValueError: bad")
    assert run.ended_at is not None


# ---------------------------------------------------------------------------------------------
# Metric batches


def test_nan_is_stored_as_null_and_infinities_as_themselves(cast, make_run):
    run = make_run()

    services.run_log_batch(
        run=run, metrics=[{"name": "x", "values": ["NaN", "Infinity", -1e308 * 10]}]
    )

    stored = [row[3] for row in points.read(MetricSeries.objects.get(run=run).pk)]
    assert stored[0] is None
    assert stored[1:] == [math.inf, -math.inf]
    series = MetricSeries.objects.get(run=run)
    assert (series.min_value, series.max_value) == (-math.inf, math.inf)


def test_a_batch_is_stored_whole_or_not_at_all(cast, make_run):
    run = make_run()
    services.run_log_batch(run=run, metrics=[{"name": "loss", "values": [1.0]}])

    with pytest.raises(InvalidInput):
        services.run_log_batch(
            run=run,
            metrics=[
                {"name": "loss", "values": [2.0]},
                {"name": "fresh", "values": [3.0]},
                {"name": "loss2", "kind": "row", "values": ["not a row"]},
            ],
            idempotency_key="k",
        )

    series = MetricSeries.objects.get(run=run)
    assert (series.name, series.count, series.last_value) == ("loss", 1, 1.0)
    assert len(points.read(series.pk)) == 1
    assert not MetricBatch.objects.filter(run=run).exists()


def test_a_kind_mismatch_found_at_write_time_rolls_back_the_batch(cast, make_run):
    run = make_run()
    services.run_log_batch(run=run, metrics=[{"name": "msg", "kind": "string", "values": ["a"]}])

    with pytest.raises(InvalidInput) as caught:
        services.run_log_batch(
            run=run,
            metrics=[{"name": "new", "values": [1.0]}, {"name": "msg", "values": [1.0]}],
            idempotency_key="k",
        )

    assert caught.value.code == "kind_mismatch"
    assert list(MetricSeries.objects.filter(run=run).values_list("name", flat=True)) == ["msg"]
    assert not MetricBatch.objects.filter(run=run).exists()


def test_a_duplicate_batch_is_reported_and_stored_once(cast, make_run):
    run = make_run()
    batch = [{"name": "x", "values": [1, 2, 3]}]

    first = services.run_log_batch(run=run, metrics=batch, idempotency_key="k")
    second = services.run_log_batch(run=run, metrics=batch, idempotency_key="k")

    assert (first.accepted, first.duplicate) == (3, False)
    assert (second.accepted, second.duplicate) == (0, True)
    assert MetricBatch.objects.get(run=run, key="k").points == 3
    assert MetricSeries.objects.get(run=run).count == 3


def test_a_canceled_run_takes_no_metrics(cast, make_run):
    run = make_run()
    services.run_set_status(run=run, status=S.CANCELED)

    with pytest.raises(Conflict) as caught:
        services.run_log_batch(run=run, metrics=[{"name": "x", "values": [1]}])

    assert caught.value.code == "run_canceled"
    assert not MetricSeries.objects.filter(run=run).exists()


def test_a_finished_run_still_takes_late_metrics(cast, make_run):
    # Only cancelation stops ingest: a completed run's last buffered points still land.
    run = make_run()
    services.run_set_status(run=run, status=S.COMPLETED)

    result = services.run_log_batch(run=run, metrics=[{"name": "x", "values": [1]}])

    assert result.accepted == 1


# ---------------------------------------------------------------------------------------------
# Run files


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../x",
        "a/../b",
        "a/..",
        "/etc/passwd",
        "C:/Windows",
        "c:relative",
        "a\x00b",
        "a\nb",
        "a\\..\\b",
        "a//b",
        "./a",
        "a/",
        "",
        "x" * (limits.FILE_PATH_MAX_LENGTH + 1),
        None,
    ],
)
def test_a_path_outside_the_tree_is_refused(path):
    with pytest.raises(InvalidInput) as caught:
        storage.check_path(path)

    assert caught.value.field == "path"


@pytest.mark.parametrize(
    "path", ["a", "a/b/c.txt", "..hidden", "a..b/c", "/".join(["x" * 255] * 4), "ünï cödé"]
)
def test_a_path_inside_the_tree_is_accepted(path):
    assert storage.check_path(path) == path


def test_a_file_is_written_appended_and_read_in_parts(cast, make_run):
    run = make_run()

    services.run_file_write(run=run, path="log", stream=io.BytesIO(b"hello "))
    record = services.run_file_write(run=run, path="log", stream=io.BytesIO(b"world"), append=True)

    assert record.size == 11
    assert storage.run_file_read(run=run, path="log", offset=6, length=3) == (b"wor", 11)
    assert b"".join(storage.run_file_iter(run=run, path="log")) == b"hello world"


def test_a_missing_file_is_not_found(cast, make_run):
    run = make_run()

    with pytest.raises(NotFound):
        storage.run_file_read(run=run, path="nope")


def test_an_upload_over_the_limit_is_refused(cast, make_run, monkeypatch):
    run = make_run()
    monkeypatch.setattr(limits, "MAX_FILE_UPLOAD_BYTES", 10)

    with pytest.raises(TooLarge):
        services.run_file_write(run=run, path="big", stream=io.BytesIO(b"x" * 11))

    assert not run.files.exists()


def test_old_heartbeats_are_moved_forward(cast, make_run):
    run = make_run()
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    services.run_heartbeat(run=run)

    assert Run.objects.get(pk=run.pk).heartbeat_at > timezone.now() - timedelta(minutes=1)


def test_deleting_a_run_deletes_its_points_though_the_table_has_no_foreign_key(make_run):
    run, other = make_run(), make_run()
    for r in (run, other):
        services.run_log_batch(run=r, metrics=[{"name": "loss", "values": [1.0, 2.0, 3.0]}])
    ids = {r: MetricSeries.objects.get(run=r).pk for r in (run, other)}
    run.delete()
    left = points.read(list(ids.values()))
    assert [row[0] for row in left] == [ids[other]] * 3


@pytest.mark.django_db(transaction=True)
def test_two_batches_that_start_the_same_series_at_once_both_arrive(make_run):
    """MLflow's async logging sends batches in parallel: when two start one new series at the
    same moment, neither fails and no point is lost (on PostgreSQL they really overlap)."""
    import threading

    from django.db import connection

    run = make_run()
    for round_ in range(5):
        name = f"loss_{round_}"
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def send(values: list[float], name: str = name, barrier=barrier, errors=errors) -> None:
            try:
                barrier.wait()
                services.run_log_batch(run=run, metrics=[{"name": name, "values": values}])
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)
            finally:
                connection.close()

        threads = [threading.Thread(target=send, args=([1.0, 2.0],)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        assert errors == []
        series = MetricSeries.objects.get(run=run, name=name)
        assert series.count == 4
        assert len(points.read(series.pk)) == 4
