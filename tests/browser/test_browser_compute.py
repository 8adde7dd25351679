"""The compute and alerts pages in a real browser: the compute page's live fragment drops a
run that finished without a reload; an owner adds an alert rule through the form, whose
channel switch shows only the chosen channel's field. Screenshots of both pages."""

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import selectors, services
from runs.models import AlertDelivery, ComputeTarget, RunStatus, StatusEvent, Worker
from runs.services import alerts
from runs.views import compute as compute_views

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cluster(cast, make_run):
    target = ComputeTarget.objects.create(
        workspace=cast.workspace, name="gpu-cluster", capacity=4, description="4 × A100"
    )
    queue = f"t{target.pk}"  # the target's own queue (selectors.target_queue_name)
    running = make_run("imagenet", display_name="resnet-152 lr=0.1", compute_target="gpu-cluster")
    make_run("imagenet", display_name="vit-b16", compute_target="gpu-cluster")
    for name in ("vit-l16", "convnext"):
        make_run("imagenet", display_name=name, status="Queued", compute_target="gpu-cluster")
    make_run("mnist", display_name="mnist-smoke", status="Queued", compute_target="local")
    now = timezone.now()
    Worker.objects.create(
        worker_id="w1", queue_name=queue, workspace=cast.workspace, hostname="gpu-node-1",
        pid=3121, last_seen_at=now, current_run=running,
    )  # fmt: skip
    Worker.objects.create(
        worker_id="w2", queue_name=queue, workspace=cast.workspace, hostname="gpu-node-2",
        pid=877, last_seen_at=now,
    )  # fmt: skip
    Worker.objects.create(
        worker_id="w3", queue_name="local", hostname="laptop", pid=51,
        last_seen_at=now - timedelta(minutes=20),
    )  # fmt: skip
    return running


def test_the_compute_page_refreshes_its_runs_and_workers_live(
    page, cast, cluster, sign_in, live_server, screenshot, monkeypatch
):
    monkeypatch.setattr(compute_views, "LIVE_INTERVAL_SECONDS", 1)
    sign_in(page, cast.owner, "/w/lab/compute/")
    page.goto(f"{live_server.url}/w/lab/compute/")

    gpu = page.locator('section.target[data-target="gpu-cluster"]')
    assert gpu.locator(".running-runs a", has_text="resnet-152 lr=0.1").count() == 1
    assert gpu.locator(".queued-runs tr").count() == 2
    assert gpu.locator(".worker.alive").count() == 2
    assert page.locator('section.target[data-target="local"] .worker.gone').count() == 1
    screenshot(page, "compute-page")

    services.run_set_status(run=cluster, status=RunStatus.COMPLETED)

    page.wait_for_function(
        "() => !document.querySelector('#compute-live').textContent.includes('resnet-152')",
        timeout=10_000,
    )
    assert gpu.locator(".running-count").inner_text() == "1"
    assert "updated" in page.locator("#compute-updated").inner_text()
    # A click on a run goes to its page.
    gpu.locator(".queued-runs a", has_text="convnext").click()
    page.wait_for_url("**/w/lab/runs/**")
    assert "convnext" in page.content()


def test_an_owner_adds_an_alert_rule_and_sees_deliveries(
    page, cast, make_run, sign_in, live_server, screenshot
):
    run = make_run("imagenet", display_name="resnet-152 lr=0.1")
    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="chat bot",
        statuses=["Completed", "Failed", "Canceled"],
        channel="webhook",
        webhook_url="https://chat.example.com/hooks/ml",
        experiment="imagenet",
    )
    event = StatusEvent.objects.create(run=run, from_status="Running", to_status="Failed")
    AlertDelivery.objects.create(
        rule=rule, event=event, attempt=1, status="failed", response_code=502, error="HTTP 502"
    )
    AlertDelivery.objects.create(
        rule=rule,
        event=event,
        attempt=2,
        status="sent",
        response_code=200,
    )
    sign_in(page, cast.owner, "/w/lab/alerts/")
    page.goto(f"{live_server.url}/w/lab/alerts/")

    form = page.locator("form.alert-form")
    page.fill("input[name=name]", "failures by mail")
    page.check("input[name=statuses][value=Failed]")
    assert form.locator(".email-field").is_visible()
    assert not form.locator(".webhook-field").is_visible()  # only the chosen channel's field
    page.fill("textarea[name=recipients]", "ml-team@example.com")
    screenshot(page, "alerts-form")
    page.click("form.alert-form button[type=submit]")
    page.wait_for_load_state()

    assert "Created alert rule" in page.content()
    assert page.locator("#alert-rules tr", has_text="failures by mail").count() == 1
    page.locator("details.secret summary").click()
    assert page.locator(".secret-value").inner_text() == rule.secret
    screenshot(page, "alerts-page")

    page.check("input[name=channel][value=webhook]")
    assert form.locator(".webhook-field").is_visible()
    assert not form.locator(".email-field").is_visible()


def test_an_owner_makes_a_worker_key_and_sees_it_once_with_the_worker_command(
    page, cast, cluster, sign_in, live_server, screenshot
):
    sign_in(page, cast.owner, "/w/lab/compute/")
    page.goto(f"{live_server.url}/w/lab/compute/")

    row = page.locator('.targets-manage tr[data-target="gpu-cluster"]')
    assert page.locator('.targets-manage tr[data-target="local"] .worker-key-button').count() == 0
    row.locator(".worker-key-button").click()

    panel = page.locator("#worker-key-new")
    panel.wait_for()
    key = panel.locator(".worker-key").inner_text().strip()
    assert key.startswith("rsw_")
    command = panel.locator(".worker-command").inner_text().strip()
    assert command == (
        f"runstudio worker -w lab -c gpu-cluster --key {key} --server-url {live_server.url}"
    )
    assert selectors.compute_target_for_worker(workspace="lab", name="gpu-cluster", key=key)
    screenshot(page, "compute-worker-key")
    page.goto(f"{live_server.url}/w/lab/compute/")
    assert key not in page.content()
    assert "New worker key" in row.locator(".worker-key-button").inner_text()
