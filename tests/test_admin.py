"""Every registered model's admin pages load for a staff superuser."""

import io

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from runs import services, tasks
from runs.models import AlertDelivery
from runs.services import alerts, saved_views

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture
def admin_client_with_data(cast, make_run, django_user_model):
    """A superuser's client, and at least one object of every registered model."""
    superuser = django_user_model.objects.create_superuser("root", password="pw-for-root")
    parent = make_run(tags={"team": "vision"}, properties={"seed": "1"})
    run = make_run(parent=parent)
    services.run_log_batch(
        run=run,
        metrics=[
            {"name": "loss", "values": [1.0, "NaN"]},
            {"name": "m", "kind": "string", "values": ["a"]},
        ],
        idempotency_key="k",
    )
    services.run_set_status(run=run, status="Completed", by=cast.owner.user)
    services.run_file_write(run=run, path="out.txt", stream=io.BytesIO(b"x"))
    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="done",
        statuses=["Completed"],
        channel="email",
        recipients="a@example.com",
    )
    AlertDelivery.objects.create(rule=rule, event=run.status_events.last(), status="sent")
    Group.objects.create(name="staff")
    # A queued script run puts a task on its target's queue (django-tasks-db's admin).
    tasks.run_enqueue(run=make_run(status="Queued", compute_target="local"))
    saved_views.view_save(
        workspace=cast.workspace, owner=cast.reader.user, name="mine", params={"q": "x"}
    )
    services.compute_target_create(workspace=cast.workspace, name="cpu-cluster", capacity=2)
    services.membership_invite(
        workspace=cast.workspace, username="newcomer", role="reader", by=cast.owner.user
    )
    services.worker_register(worker_id="host-1:local", queue_name="local")
    client = Client()
    client.force_login(superuser)
    return client


def test_every_registered_model_is_covered():
    labels = {model._meta.label for model in REGISTERED}

    assert {
        "runs.Workspace",
        "runs.Membership",
        "runs.ApiToken",
        "runs.Experiment",
        "runs.Run",
        "runs.MetricSeries",
        "runs.MetricBatch",
        "runs.RunFile",
        "runs.StatusEvent",
        "runs.CustomView",
        "runs.ComputeTarget",
        "runs.Worker",
    } <= labels


def test_the_admin_keeps_the_compute_target_rules(admin_client_with_data, cast):
    from runs.models import ComputeTarget

    local = ComputeTarget.objects.get(workspace=cast.workspace, name="local")
    url = reverse("admin:runs_computetarget_delete", args=[local.pk])
    response = admin_client_with_data.post(url, {"post": "yes"}, follow=True)
    assert ComputeTarget.objects.filter(pk=local.pk).exists()
    assert "cannot be deleted" in response.content.decode()

    add = reverse("admin:runs_computetarget_add")
    response = admin_client_with_data.post(
        add, {"workspace": cast.workspace.pk, "name": "gpu-cluster", "capacity": 3}
    )
    assert response.status_code == 302
    assert ComputeTarget.objects.get(workspace=cast.workspace, name="gpu-cluster").capacity == 3


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_the_admin_list_and_change_pages_load(admin_client_with_data, model):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    response = admin_client_with_data.get(changelist)

    assert response.status_code == 200
    obj = model._default_manager.order_by("pk").last()
    assert obj is not None, f"the fixture made no {opts.label}"
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    response = admin_client_with_data.get(change)
    assert response.status_code == 200
    assert str(obj) in response.content.decode()


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_the_admin_search_and_add_pages_load(admin_client_with_data, model):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")

    assert admin_client_with_data.get(changelist, {"q": "a"}).status_code == 200
    # django-tasks-db's task results are made by enqueueing, never by hand: its admin refuses.
    # Workers register themselves. The rest are made by the services from other doors, or are
    # records no door writes by hand (docs/architecture.md, "One door").
    read_only = opts.label in (
        "django_tasks_database.DBTaskResult",
        "runs.Worker",
        "runs.AlertDelivery",
        "runs.ApiToken",
        "runs.CustomView",
        "runs.Experiment",
        "runs.Invitation",
        "runs.MetricBatch",
        "runs.MetricSeries",
        "runs.Run",
        "runs.RunFile",
        "runs.StatusEvent",
        "runs.Workspace",
    )
    assert admin_client_with_data.get(add).status_code == (403 if read_only else 200)
