"""The compute page: targets with their workers and their running and queued runs; finished
runs leave it; owners manage targets; the live fragment is what static/js/compute.js polls."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from runs import services
from runs.models import ComputeTarget, RunStatus, Worker


def browser(member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


@pytest.fixture
def cluster(cast, make_run):
    """Target cpu-cluster with one live and one silent worker, a running and a queued run;
    plus a finished run and an interactive one, which the page must not list."""
    target = ComputeTarget.objects.create(workspace=cast.workspace, name="cpu-cluster", capacity=4)
    queue = f"t{target.pk}"  # the target's own queue (compute.target_queue_name)
    now = timezone.now()
    running = make_run("exp", display_name="train-a", compute_target="cpu-cluster")
    queued = make_run("exp", display_name="train-b", status="Queued", compute_target="cpu-cluster")
    done = make_run("exp", display_name="train-old", compute_target="cpu-cluster")
    services.run_set_status(run=done, status=RunStatus.COMPLETED)
    make_run("exp", display_name="notebook")  # interactive: no target
    Worker.objects.create(
        worker_id="w-alive", queue_name=queue, workspace=cast.workspace, hostname="gpu-box-1",
        pid=4242, last_seen_at=now, current_run=running,
    )  # fmt: skip
    Worker.objects.create(
        worker_id="w-silent", queue_name=queue, workspace=cast.workspace, hostname="gpu-box-2",
        pid=99, last_seen_at=now - timedelta(hours=2),
    )  # fmt: skip
    return {"running": running, "queued": queued, "done": done}


@pytest.mark.parametrize("role", ["owner", "contributor", "reader"])
def test_members_see_each_target_with_its_workers_and_running_and_queued_runs(cast, cluster, role):
    page = browser(cast.by_role(role)).get("/w/lab/compute/")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-target="local"' in html and 'data-target="cpu-cluster"' in html
    running, queued = cluster["running"], cluster["queued"]
    assert f'href="/w/lab/runs/{running.run_id}/"' in html and "train-a" in html
    assert f'href="/w/lab/runs/{queued.run_id}/"' in html and "train-b" in html
    assert "gpu-box-1:4242" in html and "gpu-box-2:99" in html
    assert 'class="worker alive"' in html and 'class="worker gone"' in html
    assert "not responding" in html
    assert "train-old" not in html and "notebook" not in html  # finished / not on a target


def test_a_run_that_finishes_leaves_the_live_fragment(cast, cluster):
    client = browser(cast.reader)
    before = client.get("/w/lab/compute/live/").content.decode()
    assert "train-a" in before

    services.run_set_status(run=cluster["running"], status=RunStatus.FAILED)
    services.run_set_status(run=cluster["queued"], status=RunStatus.CANCELED)
    after = client.get("/w/lab/compute/live/")

    assert after.status_code == 200
    html = after.content.decode()
    assert "<html" not in html  # a fragment, not a page
    assert "train-a" not in html and "train-b" not in html
    assert "Nothing running." in html and "Nothing queued." in html


def test_the_live_fragment_and_page_query_counts_do_not_grow_with_runs(
    cast, cluster, make_run, django_assert_max_num_queries
):
    client = browser(cast.reader)
    client.get("/w/lab/compute/live/")
    for n in range(20):
        make_run("exp", display_name=f"q{n}", status="Queued", compute_target="cpu-cluster")

    with django_assert_max_num_queries(12):
        html = client.get("/w/lab/compute/live/").content.decode()
    assert html.count("q1") >= 1 and "#21" in html


def test_only_the_owner_sees_the_management_forms(cast, cluster):
    owner = browser(cast.owner).get("/w/lab/compute/").content.decode()
    reader = browser(cast.reader).get("/w/lab/compute/").content.decode()

    assert "Manage targets" in owner and "/w/lab/compute/new/" in owner
    assert "Manage targets" not in reader and "/w/lab/compute/new/" not in reader
    assert "/compute/cpu-cluster/delete/" not in reader


def test_the_owner_adds_resizes_and_deletes_a_target(cast):
    client = browser(cast.owner)

    assert client.post("/w/lab/compute/new/", {"name": "gpu", "capacity": "2"}).status_code == 302
    assert ComputeTarget.objects.get(workspace=cast.workspace, name="gpu").capacity == 2
    client.post("/w/lab/compute/gpu/", {"capacity": "8", "description": "A100s"})
    target = ComputeTarget.objects.get(workspace=cast.workspace, name="gpu")
    assert (target.capacity, target.description) == (8, "A100s")
    client.post("/w/lab/compute/gpu/delete/")
    assert not ComputeTarget.objects.filter(name="gpu").exists()


def test_bad_target_input_comes_back_as_a_message_and_changes_nothing(cast, cluster):
    client = browser(cast.owner)

    response = client.post("/w/lab/compute/cpu-cluster/", {"capacity": "0"}, follow=True)
    assert "capacity: a whole number from 1" in response.content.decode()
    response = client.post(
        "/w/lab/compute/new/", {"name": "bad name!", "capacity": "1"}, follow=True
    )
    assert "is not a valid name" in response.content.decode()
    response = client.post("/w/lab/compute/cpu-cluster/delete/", follow=True)
    assert "queued or running" in response.content.decode()  # it has live runs
    assert ComputeTarget.objects.get(name="cpu-cluster").capacity == 4


@pytest.mark.parametrize("role", ["contributor", "reader"])
def test_contributors_and_readers_get_403_on_target_changes(cast, cluster, role):
    client = browser(cast.by_role(role))

    assert client.post("/w/lab/compute/new/", {"name": "gpu"}).status_code == 403
    assert client.post("/w/lab/compute/cpu-cluster/", {"capacity": "9"}).status_code == 403
    assert client.post("/w/lab/compute/cpu-cluster/delete/").status_code == 403
    assert ComputeTarget.objects.get(name="cpu-cluster").capacity == 4
    assert not ComputeTarget.objects.filter(name="gpu").exists()


def test_an_outsider_gets_404_on_the_page_the_fragment_and_every_post(cast, cluster):
    client = browser(cast.outsider)

    assert client.get("/w/lab/compute/").status_code == 404
    assert client.get("/w/lab/compute/live/").status_code == 404
    assert client.post("/w/lab/compute/new/", {"name": "gpu"}).status_code == 404
    assert client.post("/w/lab/compute/cpu-cluster/", {"capacity": "9"}).status_code == 404
    assert client.post("/w/lab/compute/cpu-cluster/delete/").status_code == 404
    assert ComputeTarget.objects.get(name="cpu-cluster").capacity == 4


def test_an_unknown_target_is_404_for_the_owner(cast):
    client = browser(cast.owner)

    assert client.post("/w/lab/compute/nope/", {"capacity": "2"}).status_code == 404
    assert client.post("/w/lab/compute/nope/delete/").status_code == 404


def test_target_forms_need_the_csrf_token(cast, cluster):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.owner.user)

    assert client.post("/w/lab/compute/new/", {"name": "gpu"}).status_code == 403
    assert client.post("/w/lab/compute/cpu-cluster/delete/").status_code == 403
    assert ComputeTarget.objects.filter(name="cpu-cluster").exists()


def test_anonymous_visitors_are_sent_to_sign_in(cast):
    assert Client().get("/w/lab/compute/").status_code == 302
    assert Client().get("/w/lab/compute/live/").status_code == 302


def test_a_target_whose_alive_worker_is_not_isolated_says_so_on_the_page_and_in_the_api(cast):
    sandboxed = ComputeTarget.objects.create(workspace=cast.workspace, name="sandboxed")
    bare = ComputeTarget.objects.create(workspace=cast.workspace, name="bare")
    now = timezone.now()
    for target, isolated in ((sandboxed, True), (bare, True), (bare, False)):
        Worker.objects.create(
            worker_id=f"w-{target.name}-{isolated}", queue_name=f"t{target.pk}",
            workspace=cast.workspace, isolated=isolated, hostname="box", last_seen_at=now,
        )  # fmt: skip

    html = browser(cast.reader).get("/w/lab/compute/live/").content.decode()
    api = cast.reader.client.get("/api/v1/workspaces/lab/compute").json()["results"]

    sections = {s.split('"', 1)[0]: s for s in html.split('data-target="')[1:]}
    assert 'class="badge not-isolated"' in sections["bare"]
    assert "not isolated" not in sections["sandboxed"] and ">isolated<" in sections["sandboxed"]
    assert "not isolated" not in sections["local"]  # no worker alive: nothing to say
    by_name = {t["name"]: t for t in api}
    assert (by_name["bare"]["isolated"], by_name["sandboxed"]["isolated"]) == (False, True)
    assert by_name["local"]["isolated"] is None
    assert sorted(w["isolated"] for w in by_name["bare"]["workers"]) == [False, True]


def test_the_owner_sees_a_key_button_for_each_target_but_local(cast, cluster):
    html = browser(cast.owner).get("/w/lab/compute/").content.decode()

    assert "/w/lab/compute/cpu-cluster/worker-key/" in html and "Make worker key" in html
    assert "/w/lab/compute/local/worker-key/" not in html
    assert "worker-key" not in browser(cast.reader).get("/w/lab/compute/").content.decode()
