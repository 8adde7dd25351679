"""Metric ingest and reads through /api/v1/runs/{run_id}/metrics*."""

import json

import pytest

from runs import limits, points, services
from runs.models import MetricBatch, MetricEntry, MetricSeries, RunStatus


@pytest.fixture
def run(make_run):
    return make_run()


def error(response) -> dict:
    return response.json()["error"]


def post_batch(client, run, metrics, **extra):
    return client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch", {"metrics": metrics, **extra}, format="json"
    )


def post_raw(client, run, body: str):
    """For bodies DRF's test renderer refuses to write, such as bare NaN tokens."""
    return client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch", data=body, content_type="application/json"
    )


def values(client, run, *names) -> dict:
    response = client.get(f"/api/v1/runs/{run.run_id}/metrics/values", {"name": list(names)})
    assert response.status_code == 200, response.content
    return response.json()["metrics"]


def history(client, run, name, **params) -> dict:
    response = client.get(f"/api/v1/runs/{run.run_id}/metrics/history", {"name": name, **params})
    assert response.status_code == 200, response.content
    return response.json()


def summaries(client, run) -> dict:
    response = client.get(f"/api/v1/runs/{run.run_id}/metrics")
    assert response.status_code == 200, response.content
    return {m["name"]: m for m in response.json()["metrics"]}


def nothing_stored(run) -> bool:
    return not (
        MetricSeries.objects.filter(run=run).exists()
        or points.read(list(MetricSeries.objects.filter(run=run).values_list("pk", flat=True)))
        or MetricEntry.objects.filter(series__run=run).exists()
        or MetricBatch.objects.filter(run=run).exists()
    )


# ---------------------------------------------------------------------------------------------
# Storing and reading back


def test_points_come_back_in_logged_order_with_steps_defaulting_to_sequence(cast, run):
    post_batch(cast.contributor.client, run, [{"name": "loss", "values": [0.9, 0.8]}])

    response = post_batch(cast.contributor.client, run, [{"name": "loss", "values": [0.7, 0.75]}])

    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "duplicate": False}
    assert values(cast.reader.client, run) == {"loss": [0.9, 0.8, 0.7, 0.75]}
    points = history(cast.reader.client, run, "loss")["points"]
    assert points["seq"] == [0, 1, 2, 3]
    assert points["step"] == [0, 1, 2, 3]
    assert points["value"] == [0.9, 0.8, 0.7, 0.75]


def test_explicit_steps_and_times_are_kept_and_null_steps_default(cast, run):
    post_batch(
        cast.contributor.client,
        run,
        [
            {
                "name": "acc",
                "values": [0.1, 0.2, 0.3],
                "steps": [10, None, 30],
                "times": [1700000000.5, 1700000001.5, None],
            }
        ],
    )

    body = history(cast.reader.client, run, "acc")

    assert body["name"] == "acc" and body["kind"] == "scalar"
    assert body["points"]["step"] == [10, 1, 30]
    assert body["points"]["time"][:2] == [1700000000.5, 1700000001.5]
    assert body["points"]["time"][2] > 1700000001.5  # the server's clock
    assert body["next_after_seq"] is None


def test_summaries_are_right_after_several_batches(cast, run):
    post_batch(cast.contributor.client, run, [{"name": "loss", "values": [5, 3, 4]}])
    post_batch(
        cast.contributor.client, run, [{"name": "loss", "values": [1.5, 2], "steps": [20, 21]}]
    )
    post_batch(cast.contributor.client, run, [{"name": "note", "kind": "string", "values": ["hi"]}])

    found = summaries(cast.reader.client, run)

    assert found["loss"] == {
        "name": "loss",
        "kind": "scalar",
        "count": 5,
        "last": 2.0,
        "min": 1.5,
        "max": 5.0,
        "last_step": 21,
    }
    assert found["note"]["kind"] == "string"
    assert found["note"]["count"] == 1
    assert found["note"]["last_step"] == 0
    assert list(found) == ["loss", "note"]


def test_composite_metrics_come_back_in_the_get_metrics_shape(cast, run):
    post_batch(
        cast.contributor.client,
        run,
        [
            {"name": "message", "kind": "string", "values": ["Hello", "again"]},
            {"name": "accuracies", "kind": "list", "values": [[0.1, 0.2], [0.3]]},
            {"name": "table", "kind": "row", "values": [{"x": 1, "y": 2}, {"x": 3}]},
            {"name": "sample", "kind": "image", "values": ["outputs/images/sample.png"]},
            {"name": "loss", "values": [0.5]},
        ],
    )
    post_batch(
        cast.contributor.client,
        run,
        [
            {"name": "accuracies", "kind": "list", "values": [[0.4]]},
            {"name": "table", "kind": "row", "values": [{"x": 5, "z": "new"}]},
        ],
    )

    assert values(cast.reader.client, run) == {
        "message": ["Hello", "again"],
        "accuracies": [0.1, 0.2, 0.3, 0.4],
        "table": {"x": [1, 3, 5], "y": [2, None, None], "z": [None, None, "new"]},
        "sample": ["outputs/images/sample.png"],
        "loss": [0.5],
    }


def test_values_can_be_asked_for_by_name(cast, run):
    post_batch(
        cast.contributor.client,
        run,
        [{"name": "a", "values": [1]}, {"name": "b", "values": [2]}, {"name": "c", "values": [3]}],
    )

    assert values(cast.reader.client, run, "a", "c") == {"a": [1.0], "c": [3.0]}


def test_the_history_of_a_composite_metric_holds_its_values(cast, run):
    post_batch(
        cast.contributor.client, run, [{"name": "table", "kind": "row", "values": [{"x": 1}]}]
    )

    body = history(cast.reader.client, run, "table")

    assert body["kind"] == "row"
    assert body["points"]["value"] == [{"x": 1}]


def test_history_pages_with_after_seq(cast, run):
    post_batch(cast.contributor.client, run, [{"name": "loss", "values": [0, 1, 2, 3, 4]}])
    pages, after = [], -1

    while after is not None:
        body = history(cast.reader.client, run, "loss", after_seq=after, limit=2)
        pages.append(body["points"]["seq"])
        after = body["next_after_seq"]

    assert pages == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("after", [129, 2**63 - 1, 10**30])
def test_history_after_the_last_point_is_empty_and_past_64_bits_a_400(cast, run, after):
    """An attacker's cursor: past the end reads nothing; past int8 is refused, naming the
    field (it was a 500 on SQLite, whose driver cannot bind the number)."""
    post_batch(cast.contributor.client, run, [{"name": "loss", "values": list(range(130))}])

    response = cast.reader.client.get(
        f"/api/v1/runs/{run.run_id}/metrics/history", {"name": "loss", "after_seq": after}
    )

    if after >= 2**63:
        assert response.status_code == 400
        assert error(response)["field"] == "after_seq"
    else:
        assert response.status_code == 200, response.content
        assert response.json()["points"]["seq"] == []
        assert response.json()["next_after_seq"] is None


def test_the_history_of_an_unknown_metric_is_a_404(cast, run):
    response = cast.reader.client.get(
        f"/api/v1/runs/{run.run_id}/metrics/history", {"name": "nope"}
    )

    assert response.status_code == 404
    assert error(response)["field"] == "name"


# ---------------------------------------------------------------------------------------------
# Non-finite values


def test_non_finite_values_sent_as_strings_are_stored_faithfully(cast, run):
    response = post_batch(
        cast.contributor.client,
        run,
        [{"name": "x", "values": [1.0, "NaN", "Infinity", "-Infinity", 2.0]}],
    )

    assert response.status_code == 200, response.content
    assert values(cast.reader.client, run) == {"x": [1.0, "NaN", "Infinity", "-Infinity", 2.0]}
    assert history(cast.reader.client, run, "x")["points"]["value"] == [
        1.0,
        "NaN",
        "Infinity",
        "-Infinity",
        2.0,
    ]


def test_bare_nan_and_infinity_tokens_are_accepted(cast, run):
    body = json.dumps(
        {"metrics": [{"name": "x", "values": [float("nan"), float("inf"), -float("inf"), 0.5]}]}
    )
    assert "NaN" in body and "Infinity" in body  # what Python's json writes

    response = post_raw(cast.contributor.client, run, body)

    assert response.status_code == 200, response.content
    assert values(cast.reader.client, run) == {"x": ["NaN", "Infinity", "-Infinity", 0.5]}
    raw = cast.reader.client.get(f"/api/v1/runs/{run.run_id}/metrics/values").content
    assert json.loads(raw, parse_constant=lambda c: pytest.fail(f"bare {c} in the response"))


def test_values_whose_sum_overflows_are_stored_as_they_are(cast, run):
    # The fast check sums a column: an overflowing sum of finite values must not read as ±inf.
    big = [1.7e308, 1.7e308, -1.7e308, -1.7e308, 2.5]
    response = post_batch(
        # Times the furthest allowed (POINT_TIME_ABS_MAX): their sum cannot overflow any more.
        cast.contributor.client,
        run,
        [{"name": "x", "values": big, "times": [limits.POINT_TIME_ABS_MAX] * 5}],
    )

    assert response.status_code == 200, response.content
    assert values(cast.reader.client, run) == {"x": big}


def test_summaries_ignore_nan_in_min_and_max(cast, run):
    post_batch(cast.contributor.client, run, [{"name": "x", "values": [3.0, "NaN", 1.0]}])
    post_batch(cast.contributor.client, run, [{"name": "x", "values": ["NaN"]}])
    post_batch(cast.contributor.client, run, [{"name": "only_nan", "values": ["NaN"]}])
    post_batch(cast.contributor.client, run, [{"name": "inf", "values": [0, "Infinity"]}])

    found = summaries(cast.reader.client, run)

    assert (found["x"]["min"], found["x"]["max"], found["x"]["last"]) == (1.0, 3.0, "NaN")
    assert found["x"]["count"] == 4
    assert (found["only_nan"]["min"], found["only_nan"]["max"]) == (None, None)
    assert found["only_nan"]["last"] == "NaN"
    assert (found["inf"]["max"], found["inf"]["last"]) == ("Infinity", "Infinity")


@pytest.mark.parametrize("value", ["nan", "inf", "1.5", True, None, [1]])
def test_a_scalar_value_that_is_not_a_number_is_a_400(cast, run, value):
    response = post_batch(cast.contributor.client, run, [{"name": "x", "values": [1, value]}])

    assert response.status_code == 400
    assert error(response)["field"] == "metrics[0].values[1]"
    assert nothing_stored(run)


def test_a_number_too_large_for_a_float_is_a_400(cast, run):
    response = post_raw(
        cast.contributor.client, run, '{"metrics": [{"name": "x", "values": [1' + "0" * 400 + "]}]}"
    )

    assert response.status_code == 400
    assert error(response)["field"] == "metrics[0].values[0]"
    assert nothing_stored(run)


def test_a_step_too_large_for_64_bits_is_a_400(cast, run):
    response = post_batch(
        cast.contributor.client, run, [{"name": "x", "values": [1.0], "steps": [2**63]}]
    )

    assert response.status_code == 400
    assert error(response)["field"] == "metrics[0].steps[0]"
    assert nothing_stored(run)


# ---------------------------------------------------------------------------------------------
# Idempotency


def test_a_batch_retried_with_its_key_is_stored_once(cast, run):
    batch = [{"name": "loss", "values": [1.0, 2.0]}]

    first = post_batch(cast.contributor.client, run, batch, idempotency_key="k-1")
    again = post_batch(cast.contributor.client, run, batch, idempotency_key="k-1")

    assert first.json() == {"accepted": 2, "duplicate": False}
    assert again.status_code == 200
    assert again.json() == {"accepted": 0, "duplicate": True}
    assert values(cast.reader.client, run) == {"loss": [1.0, 2.0]}
    assert summaries(cast.reader.client, run)["loss"]["count"] == 2


def test_batches_with_different_keys_are_both_stored(cast, run):
    batch = [{"name": "loss", "values": [1.0]}]

    post_batch(cast.contributor.client, run, batch, idempotency_key="k-1")
    second = post_batch(cast.contributor.client, run, batch, idempotency_key="k-2")

    assert second.json() == {"accepted": 1, "duplicate": False}
    assert values(cast.reader.client, run) == {"loss": [1.0, 1.0]}


def test_an_idempotency_key_belongs_to_one_run(cast, run, make_run):
    other = make_run()
    batch = [{"name": "loss", "values": [1.0]}]

    post_batch(cast.contributor.client, run, batch, idempotency_key="k-1")
    response = post_batch(cast.contributor.client, other, batch, idempotency_key="k-1")

    assert response.json()["duplicate"] is False
    assert values(cast.reader.client, other) == {"loss": [1.0]}


def test_a_refused_batch_does_not_use_up_its_key(cast, run):
    bad = post_batch(
        cast.contributor.client, run, [{"name": "", "values": [1]}], idempotency_key="k"
    )
    good = post_batch(
        cast.contributor.client, run, [{"name": "x", "values": [1]}], idempotency_key="k"
    )

    assert bad.status_code == 400
    assert good.json() == {"accepted": 1, "duplicate": False}


def test_an_idempotency_key_over_the_limit_is_a_400(cast, run):
    response = post_batch(
        cast.contributor.client, run, [{"name": "x", "values": [1]}], idempotency_key="k" * 101
    )

    assert response.status_code == 400
    assert error(response)["field"] == "idempotency_key"
    assert nothing_stored(run)


# ---------------------------------------------------------------------------------------------
# Validation: the whole batch is checked before anything is written


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("m" * 256, "255"),
        ("a\x00b", "control"),
        ("new\nline", "control"),
        ("del\x7f", "control"),
        (7, "string"),
        (None, "string"),
    ],
)
def test_a_bad_metric_name_is_a_400_naming_the_series(cast, run, name, why):
    response = post_batch(
        cast.contributor.client,
        run,
        [{"name": "fine", "values": [1.0]}, {"name": name, "values": [1.0]}],
    )

    assert response.status_code == 400
    assert error(response)["field"] == "metrics[1].name"
    assert why in error(response)["message"]
    assert nothing_stored(run)


def test_a_metric_name_of_255_characters_is_fine(cast, run):
    response = post_batch(cast.contributor.client, run, [{"name": "m" * 255, "values": [1.0]}])

    assert response.status_code == 200
    assert list(values(cast.reader.client, run)) == ["m" * 255]


def test_a_batch_over_the_point_limit_is_refused_whole(cast, run):
    allowed = limits.MAX_POINTS_PER_BATCH
    metrics = [
        {"name": "first", "values": [0.5] * 10},
        {"name": "second", "values": [0.5] * (allowed + 1 - 10)},
    ]

    response = post_batch(cast.contributor.client, run, metrics)

    assert response.status_code == 400
    assert error(response)["code"] == "batch_too_large"
    assert f"{allowed}" in error(response)["message"]
    assert "Split" in error(response)["message"]
    assert nothing_stored(run)


def test_a_batch_at_the_point_limit_is_stored(cast, run):
    allowed = limits.MAX_POINTS_PER_BATCH

    response = post_batch(cast.contributor.client, run, [{"name": "x", "values": [0.5] * allowed}])

    assert response.json() == {"accepted": allowed, "duplicate": False}
    assert len(points.read(MetricSeries.objects.get(run=run).pk)) == allowed


def test_a_batch_over_the_series_limit_is_refused(cast, run):
    metrics = [{"name": f"m{i}", "values": [1]} for i in range(limits.MAX_SERIES_PER_BATCH + 1)]

    response = post_batch(cast.contributor.client, run, metrics)

    assert response.status_code == 400
    assert error(response)["code"] == "batch_too_large"
    assert str(limits.MAX_SERIES_PER_BATCH) in error(response)["message"]
    assert nothing_stored(run)


def test_a_body_over_the_byte_limit_is_a_413(cast, run, monkeypatch):
    monkeypatch.setattr(limits, "MAX_BATCH_BYTES", 1_000)

    response = post_batch(cast.contributor.client, run, [{"name": "x", "values": [0.5] * 400}])

    assert response.status_code == 413
    assert error(response)["code"] == "batch_too_large"
    assert "1000" in error(response)["message"]
    assert nothing_stored(run)


def test_a_declared_length_over_the_real_limit_is_a_413(cast, run):
    response = cast.contributor.client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch",
        data=b"{}",
        content_type="application/json",
        CONTENT_LENGTH=str(limits.MAX_BATCH_BYTES + 1),
    )

    assert response.status_code == 413
    assert nothing_stored(run)


def test_a_string_into_a_scalar_series_is_a_400(cast, run):
    post_batch(cast.contributor.client, run, [{"name": "loss", "values": [1.0]}])

    response = post_batch(
        cast.contributor.client,
        run,
        [{"name": "new", "values": [2.0]}, {"name": "loss", "kind": "string", "values": ["high"]}],
    )

    assert response.status_code == 400
    assert error(response)["code"] == "kind_mismatch"
    assert "'loss'" in error(response)["message"]
    assert values(cast.reader.client, run) == {"loss": [1.0]}  # "new" was not created either


@pytest.mark.parametrize(
    ("series", "field"),
    [
        ({"name": "x", "kind": "tensor", "values": [1]}, "metrics[0].kind"),
        ({"name": "x", "values": []}, "metrics[0].values"),
        ({"name": "x", "values": 1.0}, "metrics[0].values"),
        ({"name": "x", "values": [1, 2], "steps": [0]}, "metrics[0].steps"),
        ({"name": "x", "values": [1], "steps": [1.5]}, "metrics[0].steps[0]"),
        ({"name": "x", "values": [1], "times": ["now"]}, "metrics[0].times[0]"),
        ({"name": "x", "kind": "string", "values": [1]}, "metrics[0].values[0]"),
        ({"name": "x", "kind": "list", "values": ["a"]}, "metrics[0].values[0]"),
        ({"name": "x", "kind": "row", "values": [[1]]}, "metrics[0].values[0]"),
        ({"name": "x", "kind": "image", "values": [{}]}, "metrics[0].values[0]"),
        ("not an object", "metrics[0]"),
    ],
)
def test_a_malformed_series_is_a_400_naming_the_field(cast, run, series, field):
    response = post_batch(cast.contributor.client, run, [series])

    assert response.status_code == 400
    assert error(response)["field"] == field
    assert nothing_stored(run)


def test_a_series_named_twice_in_one_batch_is_a_400(cast, run):
    response = post_batch(
        cast.contributor.client, run, [{"name": "x", "values": [1]}, {"name": "x", "values": [2]}]
    )

    assert response.status_code == 400
    assert error(response)["field"] == "metrics[1].name"


def test_a_batch_without_a_metrics_list_is_a_400(cast, run):
    response = cast.contributor.client.post(
        f"/api/v1/runs/{run.run_id}/metrics/batch", {"points": []}, format="json"
    )

    assert response.status_code == 400
    assert error(response)["field"] == "metrics"


def test_malformed_json_is_a_400(cast, run):
    response = post_raw(cast.contributor.client, run, '{"metrics": [')

    assert response.status_code == 400
    assert nothing_stored(run)


# ---------------------------------------------------------------------------------------------
# The run's state


@pytest.mark.parametrize("status", [RunStatus.CANCEL_REQUESTED, RunStatus.CANCELED])
def test_a_run_being_canceled_takes_no_metrics(cast, run, status):
    services.run_set_status(run=run, status=status)

    response = post_batch(cast.contributor.client, run, [{"name": "x", "values": [1.0]}])

    assert response.status_code == 409
    assert error(response)["code"] == "run_canceled"
    assert error(response)["message"] == f"Run {run.run_id} is {status}; it takes no more metrics."
    assert nothing_stored(run)


def test_an_unknown_run_takes_no_metrics(cast):
    response = cast.contributor.client.post(
        "/api/v1/runs/nope/metrics/batch",
        {"metrics": [{"name": "x", "values": [1]}]},
        format="json",
    )

    assert response.status_code == 404
    assert not MetricSeries.objects.exists()


@pytest.mark.parametrize("time", ["1" + "0" * 400, "Infinity", "NaN"])
def test_a_time_that_is_not_a_finite_number_is_a_400(cast, run, time):
    body = '{"metrics": [{"name": "x", "values": [1], "times": [' + time + "]}]}"

    response = post_raw(cast.contributor.client, run, body)

    assert response.status_code == 400
    assert error(response)["field"] == "metrics[0].times[0]"
    assert nothing_stored(run)
