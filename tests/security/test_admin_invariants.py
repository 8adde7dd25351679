"""The admin is one more door (issue 7, item 5): it writes through the services or not at
all. Each test drives the real admin with Django's test client as a staff superuser."""

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from runs import services
from runs.models import AlertRule, Membership, Role, Run, RunProperty, StatusEvent


@pytest.fixture
def staff(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", password="pw-for-root")
    client = Client()
    client.force_login(user)
    return client


def _form_data(response) -> dict:
    """What the browser would send back for an admin change page, untouched: the main form's
    and every inline formset's current values with their management forms."""
    data = {}
    form = response.context["adminform"].form
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is not None:
            data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for form in formset.forms:
            for name in form.fields:
                value = form.initial.get(name)
                if value is not None:
                    data[form.add_prefix(name)] = getattr(value, "pk", value)
            if form.instance.pk is not None:
                data[form.add_prefix("id")] = form.instance.pk
    return data


def _files_folder(run: Run) -> Path:
    return Path(settings.STORAGES["default"]["OPTIONS"]["location"]) / "runs" / run.run_id


# ---------------------------------------------------------------------------------------------
# Properties and status history: records no door rewrites


def test_the_admin_cannot_change_or_delete_a_property(staff, make_run):
    run = make_run(properties={"seed": "1"})
    url = reverse("admin:runs_run_change", args=[run.pk])
    data = _form_data(staff.get(url))
    # What a crafted POST (or the old, editable inline) sends for the property row.
    prop = run.properties.get()
    data.update(
        {
            "properties-TOTAL_FORMS": "1",
            "properties-INITIAL_FORMS": "1",
            "properties-0-id": prop.pk,
            "properties-0-run": run.pk,
            "properties-0-key": "seed",
            "properties-0-value": "2",
        }
    )
    staff.post(url, data)
    data["properties-0-DELETE"] = "on"
    staff.post(url, data)

    assert dict(run.properties.values_list("key", "value")) == {"seed": "1"}


def test_the_admin_cannot_add_a_property_through_the_run_page(staff, make_run):
    run = make_run()
    url = reverse("admin:runs_run_change", args=[run.pk])
    data = _form_data(staff.get(url))
    data.update(
        {
            "properties-TOTAL_FORMS": "1",
            "properties-INITIAL_FORMS": "0",
            "properties-0-run": run.pk,
            "properties-0-key": "k",
            "properties-0-value": "v",
        }
    )

    staff.post(url, data)

    assert not RunProperty.objects.filter(run=run).exists()


def test_the_admin_edits_a_runs_name_through_the_service_and_nothing_else(staff, make_run):
    run = make_run(display_name="old", tags={"k": "v"})
    url = reverse("admin:runs_run_change", args=[run.pk])
    data = _form_data(staff.get(url))
    tag = run.tags.get()
    data.update(
        {
            "display_name": "new",
            "status": "Completed",
            "tags-TOTAL_FORMS": "1",
            "tags-INITIAL_FORMS": "1",
            "tags-0-id": tag.pk,
            "tags-0-run": run.pk,
            "tags-0-key": "k",
            "tags-0-value": "changed",
        }
    )

    response = staff.post(url, data)

    assert response.status_code == 302
    run.refresh_from_db()
    assert run.display_name == "new"
    assert run.status == "Running"  # status changes go through run_set_status only
    assert dict(run.tags.values_list("key", "value")) == {"k": "v"}


def test_the_admin_cannot_delete_or_edit_a_status_event(staff, make_run):
    run = make_run()
    event = run.status_events.get()

    delete = staff.post(reverse("admin:runs_statusevent_delete", args=[event.pk]), {"post": "yes"})
    change = staff.post(
        reverse("admin:runs_statusevent_change", args=[event.pk]), {"to_status": "Failed"}
    )

    assert delete.status_code == 403
    assert change.status_code == 403
    assert StatusEvent.objects.get(pk=event.pk).to_status == "Running"


# ---------------------------------------------------------------------------------------------
# Alert rules: validated by the alert service


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"recipients": "not-an-address"}, "recipients", "'not-an-address' is not an e-mail"),
        ({"channel": "webhook", "webhook_url": "ftp://x.test/"}, "webhook_url", "http://"),
        ({"statuses": "[]"}, "statuses", "at least one status"),
        ({"statuses": '["Exploded"]'}, "statuses", "'Exploded' is not a run status"),
    ],
)
def test_the_admin_refuses_an_invalid_alert_rule_with_the_services_message(
    staff, cast, fields, field, says
):
    data = {
        "workspace": cast.workspace.pk,
        "name": "r",
        "statuses": '["Failed"]',
        "channel": "email",
        "recipients": "a@example.com",
        "webhook_url": "",
        "enabled": "on",
        **fields,
    }

    response = staff.post(reverse("admin:runs_alertrule_add"), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert says in " ".join(errors.get(field, []))
    assert not AlertRule.objects.exists()


def test_a_valid_alert_rule_from_the_admin_is_made_by_the_service(staff, cast):
    data = {
        "workspace": cast.workspace.pk,
        "name": "hook",
        "statuses": '["Failed", "Completed", "Failed"]',
        "channel": "webhook",
        "webhook_url": "https://hooks.example.com/x",
        "recipients": "",
        "enabled": "on",
    }

    response = staff.post(reverse("admin:runs_alertrule_add"), data)

    assert response.status_code == 302
    rule = AlertRule.objects.get()
    assert rule.secret.startswith("whsec_")  # every webhook is signed
    assert rule.statuses == ["Completed", "Failed"]  # the service's order, no repeats


def test_editing_an_alert_rule_in_the_admin_is_validated_and_saved_by_the_service(staff, cast):
    from runs.services import alerts

    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="mail",
        statuses=["Failed"],
        channel="email",
        recipients="a@example.com",
    )
    url = reverse("admin:runs_alertrule_change", args=[rule.pk])
    data = {
        "name": "mail",
        "statuses": '["Failed"]',
        "channel": "email",
        "recipients": "a@example.com",
        "webhook_url": "",
        "enabled": "on",
    }

    refused = staff.post(url, {**data, "recipients": "not-an-address"})
    switched = staff.post(
        url, {**data, "channel": "webhook", "webhook_url": "https://hooks.example.com/x"}
    )

    assert refused.status_code == 200
    assert "is not an e-mail address" in " ".join(
        refused.context["adminform"].form.errors["recipients"]
    )
    assert switched.status_code == 302
    rule.refresh_from_db()
    assert rule.channel == "webhook" and rule.recipients == ""  # the service's rules
    assert rule.secret.startswith("whsec_")


def test_the_admin_deletes_an_alert_rule_with_its_delivery_log(staff, cast, make_run):
    from runs.models import AlertDelivery
    from runs.services import alerts

    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="mail",
        statuses=["Completed"],
        channel="email",
        recipients="a@example.com",
    )
    run = make_run()
    AlertDelivery.objects.create(rule=rule, event=run.status_events.get(), status="sent")

    response = staff.post(reverse("admin:runs_alertrule_delete", args=[rule.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not AlertRule.objects.exists() and not AlertDelivery.objects.exists()


# ---------------------------------------------------------------------------------------------
# Deleting a run removes its files


def test_deleting_a_run_in_the_admin_removes_its_files(staff, make_run):
    parent = make_run()
    child = make_run(parent=parent)
    for run in (parent, child):
        services.run_file_write(run=run, path="logs/out.txt", stream=io.BytesIO(b"x" * 100))
        assert _files_folder(run).is_dir()

    response = staff.post(reverse("admin:runs_run_delete", args=[parent.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Run.objects.filter(pk__in=[parent.pk, child.pk]).exists()
    assert not _files_folder(parent).exists()
    assert not _files_folder(child).exists()


def test_the_bulk_delete_action_removes_every_selected_runs_files(staff, make_run):
    runs = [make_run() for _ in range(3)]
    for run in runs:
        services.run_file_write(run=run, path="out.bin", stream=io.BytesIO(b"y"))

    staff.post(
        reverse("admin:runs_run_changelist"),
        {"action": "delete_selected", "_selected_action": [r.pk for r in runs], "post": "yes"},
    )

    assert not Run.objects.filter(pk__in=[r.pk for r in runs]).exists()
    assert not any(_files_folder(r).exists() for r in runs)


# ---------------------------------------------------------------------------------------------
# The last owner stays


def test_the_admin_cannot_demote_the_last_owner(staff, cast):
    membership = Membership.objects.get(workspace=cast.workspace, user=cast.owner.user)
    url = reverse("admin:runs_membership_change", args=[membership.pk])

    response = staff.post(url, {"role": Role.READER})

    assert response.status_code == 200
    assert "last owner" in " ".join(response.context["adminform"].form.errors["role"])
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_the_admin_cannot_delete_the_last_owners_membership(staff, cast):
    membership = Membership.objects.get(workspace=cast.workspace, user=cast.owner.user)

    single = staff.post(
        reverse("admin:runs_membership_delete", args=[membership.pk]), {"post": "yes"}
    )
    bulk = staff.post(
        reverse("admin:runs_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [membership.pk], "post": "yes"},
    )

    assert single.status_code == 302 and bulk.status_code == 302
    assert Membership.objects.filter(pk=membership.pk, role=Role.OWNER).exists()


def test_the_admin_cannot_delete_a_user_who_is_a_workspaces_last_owner(staff, cast):
    url = reverse("admin:auth_user_delete", args=[cast.owner.user.pk])

    response = staff.post(url, {"post": "yes"}, follow=True)
    bulk = staff.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [cast.owner.user.pk], "post": "yes"},
        follow=True,
    )

    assert "last owner" in response.content.decode()
    assert "last owner" in bulk.content.decode()
    assert Membership.objects.filter(workspace=cast.workspace, role=Role.OWNER).exists()


def test_the_admin_deletes_a_user_who_is_no_last_owner_with_their_tokens_and_views(staff, cast):
    from runs.services import saved_views

    saved_views.view_save(workspace=cast.workspace, owner=cast.reader.user, name="v", params={})
    url = reverse("admin:auth_user_delete", args=[cast.reader.user.pk])

    response = staff.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not type(cast.reader.user).objects.filter(pk=cast.reader.user.pk).exists()


def test_the_admin_changes_a_members_role_through_the_service(staff, cast):
    membership = Membership.objects.get(workspace=cast.workspace, user=cast.reader.user)
    url = reverse("admin:runs_membership_change", args=[membership.pk])

    response = staff.post(url, {"role": Role.OWNER})

    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.OWNER
    # Now there are two owners, so the first may step down.
    services.membership_set(workspace=cast.workspace, user=cast.owner.user, role=Role.READER)


def test_a_run_a_worker_still_executes_is_not_deleted_under_it(staff, make_run):
    run = make_run(status="Queued", compute_target="local")
    services.run_file_write(run=run, path="logs/out.txt", stream=io.BytesIO(b"x"))

    response = staff.post(
        reverse("admin:runs_run_delete", args=[run.pk]), {"post": "yes"}, follow=True
    )

    assert "cancel it" in response.content.decode()
    assert Run.objects.filter(pk=run.pk).exists()
    assert _files_folder(run).is_dir()
