"""Studio list pages: experiments, run lists (filters, search, columns, sort, paging, CSV,
live statuses) and custom views — for each role, with the Django test client."""

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import services
from runs.models import CustomView, Run, RunStatus
from runs.services import saved_views

ROLES = ["owner", "contributor", "reader"]


def browser(member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


def log(run, **metrics):
    services.run_log_batch(
        run=run,
        metrics=[{"name": n, "kind": "scalar", "values": v} for n, v in metrics.items()],
    )


def listed(response) -> list[str]:
    """Run ids in the order the page lists them."""
    return [row[0].run_id for row in response.context["rows"]]


@pytest.fixture
def view(cast):
    return saved_views.view_save(
        workspace=cast.workspace,
        owner=cast.contributor.user,
        name="Best runs",
        shared=True,
        params={"filters": {"q": ["metrics.loss < 1"]}, "columns": ["display_name"]},
    )


def page_urls(view) -> list[str]:
    return [
        "/w/lab/",
        "/w/lab/runs/",
        "/w/lab/experiments/exp/",
        "/w/lab/runs.csv",
        "/w/lab/run-statuses/?run=x",
        "/w/lab/views/",
        f"/w/lab/views/{view.pk}/",
    ]


# --- access -----------------------------------------------------------------------------------


def test_every_list_page_opens_for_every_member(cast, make_run, view):
    make_run()
    for role in ROLES:
        client = browser(cast.by_role(role))
        for url in page_urls(view):
            assert client.get(url).status_code == 200, (role, url)


def test_an_outsider_gets_404_for_every_page_and_post(cast, make_run, view):
    make_run()
    client = browser(cast.outsider)
    for url in page_urls(view):
        assert client.get(url).status_code == 404, url
    for action in ["new/", f"{view.pk}/update/", f"{view.pk}/delete/", f"{view.pk}/copy/"]:
        response = client.post(f"/w/lab/views/{action}", {"name": "mine", "state": ""})
        assert response.status_code == 404, action
    assert CustomView.objects.count() == 1


def test_anonymous_visitors_are_sent_to_sign_in(cast, view):
    client = Client()
    for url in ["/", *page_urls(view)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next=")


def test_the_top_bar_switches_between_the_users_workspaces(cast):
    services.membership_set(
        workspace=services.workspace_create(name="second", owner=cast.owner.user),
        user=cast.reader.user,
        role="reader",
    )
    html = browser(cast.reader).get("/w/lab/").content.decode()
    assert 'href="/w/second/"' in html
    assert 'href="/w/elsewhere/"' not in html
    assert "Sign out" in html


# --- experiments ------------------------------------------------------------------------------


def test_the_experiments_page_counts_runs_by_status_in_one_query(cast, make_run):
    for status in [RunStatus.COMPLETED, RunStatus.COMPLETED, RunStatus.FAILED]:
        services.run_set_status(run=make_run("train"), status=status)
    make_run("train")
    make_run("eval")

    response = browser(cast.reader).get("/w/lab/")

    train, evaluation = sorted(response.context["experiments"], key=lambda e: e.name, reverse=True)
    assert (train.name, train.run_count, train.completed_count) == ("train", 4, 2)
    assert (train.failed_count, train.active_count, evaluation.run_count) == (1, 1, 1)
    assert b'href="/w/lab/experiments/train/"' in response.content


def test_an_experiments_page_is_the_run_list_filtered_to_it(cast, make_run):
    mine = make_run("train")
    make_run("eval")

    response = browser(cast.reader).get("/w/lab/experiments/train/")

    assert listed(response) == [mine.run_id]
    assert browser(cast.reader).get("/w/lab/experiments/nope/").status_code == 404


# --- the run list -----------------------------------------------------------------------------


def test_user_text_is_escaped_in_the_run_list(cast, make_run):
    make_run(display_name="<b>bold</b>", tags={"note": "<script>alert(1)</script>"})

    html = browser(cast.reader).get("/w/lab/runs/?col=display_name&col=tags.note").content
    assert b"<script>alert(1)</script>" not in html
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert b"&lt;b&gt;bold&lt;/b&gt;" in html


def test_the_run_list_sorts_by_a_metric_max_in_the_database(cast, make_run):
    low, high, none, mid = make_run(), make_run(), make_run(), make_run()
    log(low, acc=[0.1, 0.2])
    log(high, acc=[0.9, 0.5])
    log(mid, acc=[0.4])
    client = browser(cast.reader)

    descending = client.get("/w/lab/runs/?col=metrics.acc.max&sort=-metrics.acc.max")
    ascending = client.get("/w/lab/runs/?col=metrics.acc.max&sort=metrics.acc.max")

    assert listed(descending) == [high.run_id, mid.run_id, low.run_id, none.run_id]
    assert listed(ascending) == [low.run_id, mid.run_id, high.run_id, none.run_id]  # gaps last
    assert b"0.9" in descending.content


def test_sorting_by_a_tag_and_by_duration(cast, make_run):
    b, a = make_run(tags={"k": "b"}), make_run(tags={"k": "a"})
    Run.objects.filter(pk=b.pk).update(
        started_at=timezone.now() - timedelta(hours=1), ended_at=timezone.now()
    )
    client = browser(cast.reader)

    assert listed(client.get("/w/lab/runs/?sort=tags.k")) == [a.run_id, b.run_id]
    assert listed(client.get("/w/lab/runs/?sort=-duration"))[0] == b.run_id


def test_filters_narrow_the_list(cast, make_run):
    vision = make_run("train", tags={"team": "vision"}, compute_target="gpu")
    audio = make_run("eval", tags={"team": "audio"}, properties={"seed": "1"})
    child = make_run("train", parent=vision, tags={"team": "vision"})
    services.run_set_status(run=audio, status=RunStatus.FAILED)
    client = browser(cast.reader)

    def ids(query: str) -> set[str]:
        return set(listed(client.get("/w/lab/runs/?" + query)))

    assert ids("") == {vision.run_id, audio.run_id}  # top-level runs by default
    assert ids("top_level=0") == {vision.run_id, audio.run_id, child.run_id}
    assert ids("experiment=train") == {vision.run_id}
    assert ids("status=Failed") == {audio.run_id}
    assert ids("status=Failed&status=Running") == {vision.run_id, audio.run_id}
    assert ids("tag=team%3Dvision&top_level=0") == {vision.run_id, child.run_id}
    assert ids("property=seed") == {audio.run_id}
    assert ids("compute_target=gpu") == {vision.run_id}
    assert ids("submitter=carl") == {vision.run_id, audio.run_id}
    today = timezone.now().date()
    assert ids(f"created_from={today}&created_to={today}") == {vision.run_id, audio.run_id}
    assert ids(f"created_to={today - timedelta(days=1)}") == set()


def test_the_search_bar_takes_the_query_language_with_or(cast, make_run):
    a = make_run(tags={"team": "vision"})
    b = make_run(display_name="sweep-7")
    make_run(tags={"team": "audio"})
    log(a, loss=[0.1])

    response = browser(cast.reader).get(
        "/w/lab/runs/", {"q": "metrics.loss.min < 0.5 OR display_name LIKE 'sweep%'"}
    )

    assert set(listed(response)) == {a.run_id, b.run_id}


def test_a_bad_query_shows_the_error_inline_and_keeps_the_input(cast, make_run):
    make_run()

    response = browser(cast.reader).get("/w/lab/runs/", {"q": "status = "})

    assert response.status_code == 400  # the form comes back with the error, as a 400
    html = response.content.decode()
    assert "Syntax error at column 9: expected a value after &#x27;=&#x27;" in html
    assert 'value="status = "' in html
    assert listed(response) == []


def test_the_run_list_takes_the_same_queries_for_5_or_30_runs(cast, make_run):
    client = browser(cast.reader)
    url = (
        "/w/lab/runs/?col=display_name&col=status&col=tags.team&col=properties.p"
        "&col=metrics.loss.max&col=metrics.acc.last&sort=-metrics.loss.max"
    )

    def add(n: int):
        for i in range(n):
            parent = Run.objects.filter(parent=None).first() if i % 3 == 0 else None
            run = make_run(parent=parent, tags={"team": str(i)}, properties={"p": str(i)})
            log(run, loss=[i, 0.5], acc=[0.1])

    def count() -> int:
        client.get(url + "&top_level=0")
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url + "&top_level=0")
        assert response.status_code == 200
        return len(queries)

    add(5)
    with_5 = count()
    add(25)
    with_30 = count()

    # session, user, membership, switcher, page ids, runs, tags, properties, metric names,
    # metric values, views dropdown, experiments (filter); on PostgreSQL the time budget's
    # savepoint, SET LOCAL statement_timeout and release
    budget = 3 if connection.vendor == "postgresql" else 0
    # With child runs included the list is a tree (runs/run_tree.py): plus two queries per
    # level of children (their ids from the parent index, then those matching, sorted) and one
    # that finds the level below empty (here one level), and the pager's bounded total.
    assert with_5 == with_30 == 12 + 3 + 1 + budget


def test_pages_link_to_the_next_and_previous(cast, make_run, monkeypatch):
    monkeypatch.setattr("runs.views.lists.PAGE_SIZE", 2)
    made = [make_run().run_id for _ in range(5)]
    client = browser(cast.reader)

    first = client.get("/w/lab/runs/")
    third = client.get("/w/lab/runs/?page=3")

    assert listed(first) == made[::-1][:2]
    assert first.context["page"].has_next and b'rel="next"' in first.content
    assert listed(third) == [made[0]]
    assert not third.context["page"].has_next and b'rel="prev"' in third.content


def test_csv_export_streams_every_matching_run_with_the_chosen_columns(cast, make_run):
    runs = [make_run(display_name=f"r{i}", tags={"team": "vision"}) for i in range(120)]
    make_run(display_name="other", tags={"team": "audio"})
    log(runs[0], loss=[0.5, 0.25])

    response = browser(cast.reader).get(
        "/w/lab/runs.csv?tag=team%3Dvision&col=display_name&col=tags.team"
        "&col=metrics.loss.min&sort=display_name"
    )

    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["run_id", "display_name", "tags.team", "metrics.loss.min"]  # id first
    assert len(rows) == 121
    assert rows[1] == [runs[0].run_id, "r0", "vision", "0.25"]
    assert rows[2] == [runs[1].run_id, "r1", "vision", ""]


def test_csv_export_of_a_bad_query_is_a_400(cast):
    response = browser(cast.reader).get("/w/lab/runs.csv?q=status+%3D")
    assert response.status_code == 400
    assert b"expected a value" in response.content


def test_the_status_fragment_shows_current_statuses_of_the_workspaces_runs(cast, make_run):
    run = make_run()
    services.run_set_status(run=run, status=RunStatus.COMPLETED)
    elsewhere = services.run_create(
        experiment=services.experiment_get_or_create(
            workspace=services.workspace_create(name="third", owner=cast.owner.user), name="x"
        )[0],
        spec=services.RunSpec(),
        submitter=cast.owner.user,
    )

    html = (
        browser(cast.reader)
        .get(f"/w/lab/run-statuses/?run={run.run_id}&run={elsewhere.run_id}")
        .content.decode()
    )

    assert f'data-status-for="{run.run_id}" data-status="Completed"' in html
    assert elsewhere.run_id not in html


def test_selected_runs_link_to_the_compare_page(cast, make_run):
    run = make_run()
    html = browser(cast.reader).get(f"/w/lab/runs/?run={run.run_id}").content.decode()
    assert 'data-compare-url="/w/lab/compare/"' in html
    assert f'value="{run.run_id}" form="run-form"' in html and "checked" in html


# --- the REST API shares the FilterSet and the language ----------------------------------------


def test_the_api_run_list_takes_q(cast, make_run):
    a = make_run(tags={"team": "vision"})
    b = make_run(tags={"team": "audio"})
    make_run(tags={"team": "nlp"})

    response = cast.reader.client.get(
        "/api/v1/workspaces/lab/runs", {"q": "tags.team = 'vision' OR tags.team = 'audio'"}
    )

    assert response.status_code == 200
    assert {r["run_id"] for r in response.json()["results"]} == {a.run_id, b.run_id}


def test_a_bad_api_query_is_a_400_on_field_q(cast):
    response = cast.reader.client.get("/api/v1/workspaces/lab/runs", {"q": "metrics.loss <"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "q"
    assert "Syntax error at column 15: expected a value after '<'" in error["message"]


# --- custom views -----------------------------------------------------------------------------


def test_a_reader_saves_a_view_and_it_opens_exactly_as_saved(cast, make_run):
    good, bad = make_run(tags={"team": "a"}), make_run(tags={"team": "b"})
    log(good, loss=[0.2])
    log(bad, loss=[3.0])
    client = browser(cast.reader)
    state = "q=metrics.loss+%3C+1&col=display_name&col=metrics.loss.max&sort=-metrics.loss.max"

    response = client.post(
        "/w/lab/views/new/",
        {"name": "Low loss", "shared": "on", "state": state + f"&run={good.run_id}"},
    )

    view = CustomView.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/w/lab/views/{view.pk}/"
    assert (view.owner, view.shared, view.name) == (cast.reader.user, True, "Low loss")
    assert view.params["filters"] == {"q": ["metrics.loss < 1"]}
    assert view.params["columns"] == ["display_name", "metrics.loss.max"]
    assert view.params["sort"] == "-metrics.loss.max"
    assert view.params["selected"] == [good.run_id]
    opened = client.get(f"/w/lab/views/{view.pk}/")
    assert listed(opened) == [good.run_id]
    assert [c.key for c in opened.context["state"].columns] == ["display_name", "metrics.loss.max"]
    assert opened.context["state"].sort == "-metrics.loss.max"
    assert opened.context["state"].selected == [good.run_id]


def test_a_shared_view_opens_for_teammates_without_edit_controls(cast, view):
    html = browser(cast.reader).get(f"/w/lab/views/{view.pk}/").content.decode()

    assert "Best runs" in html
    assert "Save a copy" in html
    assert f"/w/lab/views/{view.pk}/update/" not in html
    assert f"/w/lab/views/{view.pk}/delete/" not in html
    owner_html = browser(cast.contributor).get(f"/w/lab/views/{view.pk}/").content.decode()
    assert f"/w/lab/views/{view.pk}/update/" in owner_html


def test_only_the_owner_updates_or_deletes_a_view(cast, view):
    for role in ["owner", "reader"]:  # the workspace owner is not the view's owner
        client = browser(cast.by_role(role))
        update = client.post(f"/w/lab/views/{view.pk}/update/", {"name": "Mine now"})
        delete = client.post(f"/w/lab/views/{view.pk}/delete/")
        assert (update.status_code, delete.status_code) == (403, 403), role
    view.refresh_from_db()
    assert view.name == "Best runs"

    client = browser(cast.contributor)
    client.post(f"/w/lab/views/{view.pk}/update/", {"state": "status=Failed", "name": "Failed"})
    view.refresh_from_db()
    assert (view.name, view.params["filters"]) == ("Failed", {"status": ["Failed"]})
    client.post(f"/w/lab/views/{view.pk}/update/", {"sharing": "1"})
    view.refresh_from_db()
    assert view.shared is False
    assert client.post(f"/w/lab/views/{view.pk}/delete/").status_code == 302
    assert not CustomView.objects.exists()


def test_anyone_who_sees_a_view_can_save_a_private_copy(cast, view):
    response = browser(cast.reader).post(f"/w/lab/views/{view.pk}/copy/")

    copy = CustomView.objects.exclude(pk=view.pk).get()
    assert response["Location"] == f"/w/lab/views/{copy.pk}/"
    assert (copy.owner, copy.shared, copy.name) == (cast.reader.user, False, "Copy of Best runs")
    assert copy.params == view.params


def test_a_private_view_is_404_to_everyone_else(cast):
    private = saved_views.view_save(
        workspace=cast.workspace, owner=cast.contributor.user, name="Mine", params={}
    )
    client = browser(cast.owner)

    assert client.get(f"/w/lab/views/{private.pk}/").status_code == 404
    assert client.post(f"/w/lab/views/{private.pk}/copy/").status_code == 404
    assert client.post(f"/w/lab/views/{private.pk}/delete/").status_code == 404
    assert "Mine" not in client.get("/w/lab/views/").content.decode()
    assert browser(cast.contributor).get(f"/w/lab/views/{private.pk}/").status_code == 200


def test_view_forms_need_a_csrf_token(cast):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.reader.user)

    response = client.post("/w/lab/views/new/", {"name": "x", "state": ""})

    assert response.status_code == 403
    assert not CustomView.objects.exists()
    page = client.get("/w/lab/runs/").content.decode()
    assert page.count('name="csrfmiddlewaretoken"') >= 2  # sign out and save view


def test_a_view_with_a_bad_state_is_refused_with_a_message(cast):
    client = browser(cast.reader)

    response = client.post("/w/lab/views/new/", {"name": "x", "state": "col=nope"}, follow=True)

    assert not CustomView.objects.exists()
    assert "Unknown field" in response.content.decode()


def test_view_services_check_names_and_params(cast):
    with pytest.raises(services.InvalidInput, match="name"):
        saved_views.view_save(workspace=cast.workspace, owner=cast.reader.user, name=" ", params={})
    with pytest.raises(services.InvalidInput, match="unknown filter"):
        saved_views.view_save(
            workspace=cast.workspace,
            owner=cast.reader.user,
            name="x",
            params={"filters": {"colour": ["red"]}},
        )


def test_every_list_shows_a_time_the_same_way_exact_date_with_the_second_in_its_title(
    cast, make_run, view
):
    """One formatter (studio_format's `when`): the runs list, the experiments list and the
    views list render <time datetime=ISO title="exact second" data-relative>date minute</time>,
    which studio.js turns into "3 h ago"; no page renders its own "… ago" text."""
    run = make_run(display_name="timed")
    moment = timezone.localtime(run.created_at)
    minute = moment.strftime("%Y-%m-%d %H:%M")
    second = moment.strftime("%Y-%m-%d %H:%M:%S")
    client = browser(cast.reader)
    for url in ["/w/lab/runs/?col=display_name&col=created", "/w/lab/", "/w/lab/views/"]:
        html = client.get(url).content.decode()
        assert f'title="{second} ' in html and "data-relative>" in html, url
        assert " ago</time>" not in html, url
    assert f"data-relative>{minute}</time>" in client.get("/w/lab/runs/").content.decode()


def test_a_missing_time_is_a_dash_and_an_exact_one_keeps_its_seconds():
    from runs.templatetags.studio_format import when, when_exact

    assert when(None) == "—" and when_exact("") == "—"
    moment = timezone.now().replace(microsecond=0)
    exact = when_exact(moment)
    assert timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") + "</time>" in exact
    assert "data-relative" not in exact


def test_an_experiments_runs_sit_under_experiments_in_the_top_bar(cast, make_run):
    make_run("resnet")
    client = browser(cast.reader)
    html = client.get("/w/lab/experiments/resnet/").content.decode()
    assert '<a href="/w/lab/" class="active">Experiments</a>' in html
    html = client.get("/w/lab/runs/").content.decode()
    assert '<a href="/w/lab/runs/" class="active">All runs</a>' in html
