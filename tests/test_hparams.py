"""runs/hparams.py: parameters that vary, Spearman rank correlation, the parcoords figure."""

import json

import pytest

from runs import hparams
from runs.query import Field


def columns(*runs: tuple[dict, dict]) -> list[tuple[Field, list]]:
    """Property and tag columns of some runs, as runs/compare.py hands them over: each
    (properties, tags) pair is a run; a key a run lacks is None there."""
    found = []
    for index, kind in ((0, "property"), (1, "tag")):
        for key in sorted({k for run in runs for k in run[index]}):
            found.append((Field(kind, key), [run[index].get(key) for run in runs]))
    return found


def test_spearman_matches_known_values_and_handles_ties():
    assert hparams.spearman([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]) == pytest.approx(1)
    assert hparams.spearman([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1)
    # Monotone but not linear: a rank correlation is still 1.
    assert hparams.spearman([1.0, 2.0, 3.0], [1.0, 100.0, 101.0]) == pytest.approx(1)
    # scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]) = 0.9486832980505138
    assert hparams.spearman([1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(
        0.9486832980505138
    )
    assert hparams.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # constant
    assert hparams.spearman([1.0, None, 2.0], [1.0, 2.0, 3.0]) is None  # two pairs only


def test_only_varying_parameters_become_axes_and_importance_ranks_them():
    found = hparams.params(
        columns(
            ({"lr": "0.1", "epochs": "10", "seed": "3"}, {"opt": "adam"}),
            ({"lr": "0.01", "epochs": "10", "seed": "1"}, {"opt": "sgd"}),
            ({"lr": "0.001", "epochs": "10", "seed": "2"}, {"opt": "adam"}),
            ({"lr": "0.0001", "epochs": "10", "seed": "4"}, {"opt": "sgd"}),
        )
    )
    # Axes are named by their run-list column keys.
    assert [p.key for p in found] == ["properties.lr", "properties.seed", "tags.opt"]
    assert [p.numeric for p in found] == [True, True, False]
    target = [0.9, 0.5, 0.2, 0.1]
    ranked = hparams.importance(found, target)
    assert [r["label"] for r in ranked] == ["lr", "seed"]
    assert ranked[0]["rho"] == pytest.approx(1)


def test_the_parcoords_figure_is_plain_json_with_categories_as_ticks_and_text_escaped():
    found = hparams.params(
        columns(({"lr": "0.1"}, {"opt": "<b>adam</b>"}), ({"lr": "0.01"}, {"opt": "sgd"}))
    )
    figure = hparams.parcoords_figure(found, [("loss (last)", [0.9, None])])
    json.dumps(figure, allow_nan=False)  # no NaN: the page parses it with JSON.parse
    dims = figure["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["lr", "opt", "loss (last)"]
    assert dims[1]["ticktext"] == ["&lt;b&gt;adam&lt;/b&gt;", "sgd"]
    assert dims[1]["values"] == [0, 1]
    assert dims[2]["values"] == [0.9, None]


def test_a_bare_tag_is_a_category_of_its_own():
    found = hparams.params(columns(({}, {"baseline": True}), ({}, {"baseline": None})))
    assert found == []  # set on one run, missing on the other: one value, nothing to relate
    found = hparams.params(columns(({}, {"mode": True}), ({}, {"mode": "fast"})))
    assert found[0].values == ["(set)", "fast"] and not found[0].numeric


def test_bars_of_close_values_do_not_start_at_zero_but_spread_out_ones_do():
    from runs import charts

    close = charts.children_figure(
        [{"label": f"c{i}", "max": v} for i, v in enumerate([0.91, 0.925, 0.93])],
        metric="accuracy",
        best="max",
    )
    low, high = close["layout"]["yaxis"]["range"]
    assert 0.85 < low < 0.91 and 0.93 < high < 0.95
    spread = charts.children_figure(
        [{"label": f"c{i}", "min": v} for i, v in enumerate([0.1, 0.5, 2.0])], metric="loss"
    )
    assert "range" not in spread["layout"]["yaxis"]
    bars = charts.summary_bar_figure(
        [{"label": "a", "last": 0.95, "min": 0.9, "max": 0.96}], metric="acc"
    )
    assert bars["layout"]["yaxis"]["range"][0] > 0.8
