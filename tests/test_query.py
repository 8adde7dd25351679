"""The run search language (runs/query.py): syntax, precedence, every kind of field, errors."""

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import query, services
from runs.models import Run, RunStatus
from runs.query import Field, QueryError, parse, parse_field


def names(text: str) -> set[str]:
    return set(Run.objects.filter(parse(text)).values_list("display_name", flat=True))


def log(run, **metrics):
    services.run_log_batch(
        run=run,
        metrics=[{"name": n, "kind": "scalar", "values": v} for n, v in metrics.items()],
    )


@pytest.fixture
def runs(make_run):
    """Five runs with tags, properties and metrics to search."""
    a = make_run("vision", display_name="alpha", tags={"team": "vision", "best": None})
    b = make_run("vision", display_name="beta", tags={"team": "audio"}, description="adam sweep")
    c = make_run("nlp", display_name="gamma", tags={"team": "nlp", "my key": "x y"})
    d = make_run("nlp", display_name="delta", properties={"lr": "0.1"}, compute_target="gpu")
    e = make_run("nlp", display_name="epsilon_1", tags={"team": "vision"})
    log(a, loss=[0.9, 0.2, 0.5])
    log(b, loss=[0.4, 0.3])
    log(c, loss=[2.0, 1.5], **{"val.loss": [7.0]})
    services.run_set_status(run=c, status=RunStatus.COMPLETED)
    services.run_set_status(run=d, status=RunStatus.FAILED)
    return {r.display_name: r for r in (a, b, c, d, e)}


# --- comparisons on each kind of field --------------------------------------------------------


def test_an_empty_query_matches_everything(runs):
    assert names("") == names("   ") == set(runs)


def test_attributes_compare_with_equals_and_not_equals(runs):
    assert names("display_name = 'alpha'") == {"alpha"}
    assert names('name != "alpha"') == {"beta", "gamma", "delta", "epsilon_1"}
    assert names("experiment = nlp") == {"gamma", "delta", "epsilon_1"}
    assert names("compute_target = gpu") == {"delta"}
    assert names("submitter = carl") == set(runs)


def test_status_values_are_case_insensitive(runs):
    assert names("status = completed") == {"gamma"}
    assert names("status IN ('Completed', 'FAILED')") == {"gamma", "delta"}


def test_tags_compare_by_key_and_value(runs):
    assert names("tags.team = 'vision'") == {"alpha", "epsilon_1"}
    assert names("tag.team != 'vision'") == {"beta", "gamma"}  # runs without the key excluded
    assert names("NOT tags.team = 'vision'") == {"beta", "gamma", "delta"}


def test_a_bare_key_means_the_run_has_it(runs):
    assert names("tags.best") == {"alpha"}
    assert names("properties.lr") == {"delta"}
    assert names("metrics.loss") == {"alpha", "beta", "gamma"}


def test_backticks_quote_keys_with_spaces_or_dots(runs):
    assert names("tags.`my key` = 'x y'") == {"gamma"}
    assert names("metrics.`val.loss` > 5") == {"gamma"}
    assert parse_field("metrics.`val.loss`") == Field("metric", "val.loss", "last")


def test_params_are_properties_like_mlflow(runs):
    assert names("params.lr = '0.1'") == {"delta"}
    assert names("properties.lr = 0.1") == {"delta"}


def test_metrics_compare_their_latest_value_by_default(runs):
    assert names("metrics.loss < 0.45") == {"beta"}  # alpha's last is 0.5
    assert names("metrics.loss.last < 0.45") == {"beta"}


def test_metric_min_and_max_aggregates(runs):
    assert names("metrics.loss.min <= 0.2") == {"alpha"}
    assert names("metrics.loss.max >= 0.9") == {"alpha", "gamma"}
    assert names("metric.loss.max IN (0.4, 2)") == {"beta", "gamma"}


def test_a_metric_named_like_an_aggregate_needs_backticks(make_run):
    run = make_run(display_name="odd")
    log(run, **{"a.max": [3.0]})
    assert names("metrics.`a.max` = 3") == {"odd"}
    assert parse_field("metrics.a.max") == Field("metric", "a", "max")


def test_in_and_not_in_lists(runs):
    assert names("tags.team IN ('vision', 'nlp')") == {"alpha", "gamma", "epsilon_1"}
    assert names("tags.team NOT IN ('vision', 'nlp',)") == {"beta"}
    assert names("display_name not in (alpha, beta)") == {"gamma", "delta", "epsilon_1"}


def test_like_is_case_insensitive_with_sql_wildcards(runs):
    assert names("display_name LIKE 'AL%'") == {"alpha"}
    assert names("display_name LIKE '%ta'") == {"beta", "delta"}
    assert names("display_name LIKE '%mm%'") == {"gamma"}
    assert names("display_name LIKE 'd_lta'") == {"delta"}
    assert names("display_name ILIKE 'epsilon\\_%'") == {"epsilon_1"}
    assert names("tags.team NOT LIKE 'v%'") == {"beta", "gamma"}


def test_dates_compare_whole_days_or_moments(runs):
    today = timezone.now().date().isoformat()
    assert names(f"created = '{today}'") == set(runs)
    assert names(f"created < '{today}'") == set()
    assert names(f"created >= '{today}T00:00:00Z'") == set(runs)
    assert names("created > 0") == set(runs)  # Unix milliseconds, like MLflow's start_time


def test_duration_compares_ended_or_running_time(runs):
    Run.objects.filter(pk=runs["gamma"].pk).update(
        started_at=timezone.now() - timedelta(hours=2), ended_at=timezone.now()
    )
    assert names("duration > 1h") == {"gamma"}
    assert "gamma" not in names("duration < 90m")


# --- boolean structure ------------------------------------------------------------------------


def test_not_binds_tighter_than_and_which_binds_tighter_than_or(runs):
    text = "tags.team = 'audio' OR tags.team = 'vision' AND display_name = 'alpha'"
    assert names(text) == {"beta", "alpha"}
    assert names(text) == names(
        "tags.team = 'audio' OR (tags.team = 'vision' AND display_name = 'alpha')"
    )
    grouped = "(tags.team = 'audio' OR tags.team = 'vision') AND display_name = 'alpha'"
    assert names(grouped) == {"alpha"}
    assert names("NOT tags.team = 'vision' AND experiment = nlp") == {"gamma", "delta"}
    assert names("NOT (tags.team = 'vision' OR status = Failed)") == {"beta", "gamma"}


def test_keywords_are_case_insensitive(runs):
    assert names("tags.team = 'audio' or tags.team = 'nlp'") == {"beta", "gamma"}
    assert names("not status = Running and experiment = nlp") == {"gamma", "delta"}


def test_adjacent_terms_mean_and(runs):
    assert names("experiment = vision tags.team = 'audio'") == {"beta"}


# --- bare words -------------------------------------------------------------------------------


def test_bare_words_search_names_descriptions_tags_experiments_and_submitters(runs):
    assert names("gamm") == {"gamma"}
    assert names("adam") == {"beta"}  # description
    assert names("audio") == {"beta"}  # tag value
    assert names("NLP") == {"gamma", "delta", "epsilon_1"}  # experiment name, tag value
    assert names("carl") == set(runs)  # submitter
    assert names('"x y"') == {"gamma"}  # a quoted phrase


def test_bare_words_combine_with_or_and_comparisons(runs):
    assert names("gamma OR delta") == {"gamma", "delta"}
    assert names("vision metrics.loss.min < 0.25") == {"alpha"}
    assert names("andrew OR beta") == {"beta"}  # a word that starts like a keyword


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("status = ", "Syntax error at column 9: expected a value after '='"),
        ("metrics.loss <", "Syntax error at column 15: expected a value after '<'"),
        ("(tags.a = 1", "Syntax error at column 12: expected ')'"),
        ("tags.a = 1)", "Syntax error at column 11"),
        ("tags.a IN (1 2)", "Syntax error at column 14: expected ',' or ')' after '1'"),
        ("tags.a = 'open", "Syntax error at column 10: the quoted string starting here has no"),
        ("a AND", "Syntax error at column 6: expected a search term"),
        ("tags.a = = 1", "Syntax error at column 10: expected a value after '='"),
    ],
)
def test_syntax_errors_say_where_and_what_was_expected(text, message):
    with pytest.raises(QueryError) as caught:
        parse(text)
    assert caught.value.message.startswith(message), caught.value.message
    assert caught.value.field == "q"
    assert caught.value.status == 400


def test_an_unknown_field_names_the_fields_there_are():
    with pytest.raises(QueryError, match=r"Unknown field 'colour' at column 1: use an attribute"):
        parse("colour = 'red'")


def test_an_unknown_status_lists_the_statuses(db):
    with pytest.raises(QueryError, match="'Done' is not a run status"):
        parse("status = Done")


def test_metrics_need_numbers_and_refuse_like(db):
    with pytest.raises(QueryError, match="'low' is not a number"):
        parse("metrics.loss < low")
    with pytest.raises(QueryError, match="LIKE compares text"):
        parse("metrics.loss LIKE '1%'")


def test_a_bad_date_says_which_formats_work(db):
    with pytest.raises(QueryError, match="is not a date or time"):
        parse("created > 'yesterday'")


def test_a_very_long_query_is_refused():
    with pytest.raises(QueryError, match="longer than"):
        parse("a " * query.QUERY_MAX_LENGTH)


def test_field_keys_read_back_to_the_same_field():
    for key in ["status", "tags.team", "tags.`a b`", "properties.lr", "metrics.`x y`.min"]:
        field = parse_field(key)
        assert parse_field(field.key) == field
    assert parse_field("attributes.run_name") == Field("attribute", "display_name")
    assert parse_field("start_time") == Field("attribute", "started")


def test_an_or_of_conditions_on_one_table_is_one_subquery_and_finds_the_same_runs(runs):
    text = "tags.team = 'audio' OR tags.team = 'vision' OR metrics.loss < 0.5"
    sql = str(Run.objects.filter(parse(text)).query)
    assert sql.count("runs_runtag") == 1  # the two tag conditions share one subquery
    assert names(text) == names("tags.team = 'audio'") | names("tags.team = 'vision'") | names(
        "metrics.loss < 0.5"
    )
    assert names("tags.team = 'audio' OR tags.team = 'vision'") == names(
        "tags.team IN ('audio', 'vision')"
    )
