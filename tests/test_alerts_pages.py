"""The studio's alerts page: everyone in the workspace sees rules and deliveries; owners
change them; outsiders get 404; forms need their CSRF token."""

import pytest
from django.test import Client

from runs.models import AlertDelivery, AlertRule, StatusEvent
from runs.services import alerts


def browser(member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


@pytest.fixture
def rule(cast, make_run):
    make_run("exp")
    return alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="night watch",
        statuses=["Failed", "Canceled"],
        channel="webhook",
        webhook_url="https://hooks.example.com/runstudio",
        experiment="exp",
    )


NEW_RULE = {
    "name": "done",
    "statuses": ["Completed", "Failed"],
    "experiment": "",
    "channel": "email",
    "recipients": "team@example.com",
    "enabled": "on",
}


def test_the_owner_sees_rules_with_their_secret_and_the_forms(cast, rule):
    page = browser(cast.owner).get("/w/lab/alerts/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "night watch" in html and "https://hooks.example.com/runstudio" in html
    assert rule.secret in html
    assert "Add rule" in html and "/w/lab/alerts/new/" in html
    assert f"/w/lab/alerts/{rule.pk}/delete/" in html


@pytest.mark.parametrize("role", ["contributor", "reader"])
def test_contributors_and_readers_see_rules_without_controls_or_secrets(cast, rule, role):
    page = browser(cast.by_role(role)).get("/w/lab/alerts/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "night watch" in html and "Failed" in html
    assert rule.secret not in html
    assert "Add rule" not in html and "/delete/" not in html and "/secret/" not in html


@pytest.mark.parametrize("role", ["contributor", "reader"])
def test_contributors_and_readers_get_403_on_every_alert_post(cast, rule, role):
    client = browser(cast.by_role(role))
    secret = rule.secret

    for url, data in [
        ("/w/lab/alerts/new/", NEW_RULE),
        (f"/w/lab/alerts/{rule.pk}/", NEW_RULE),
        (f"/w/lab/alerts/{rule.pk}/secret/", {}),
        (f"/w/lab/alerts/{rule.pk}/delete/", {}),
    ]:
        assert client.post(url, data).status_code == 403, url
    assert client.get(f"/w/lab/alerts/{rule.pk}/").status_code == 403

    rule.refresh_from_db()
    assert (AlertRule.objects.count(), rule.name, rule.secret) == (1, "night watch", secret)


def test_an_outsider_gets_404_everywhere_and_changes_nothing(cast, rule):
    client = browser(cast.outsider)

    assert client.get("/w/lab/alerts/").status_code == 404
    assert client.get(f"/w/lab/alerts/{rule.pk}/").status_code == 404
    for url in [
        "/w/lab/alerts/new/",
        f"/w/lab/alerts/{rule.pk}/",
        f"/w/lab/alerts/{rule.pk}/secret/",
        f"/w/lab/alerts/{rule.pk}/delete/",
    ]:
        assert client.post(url, NEW_RULE).status_code == 404, url
    assert AlertRule.objects.get().name == "night watch"


def test_a_rule_of_another_workspace_is_404_for_an_owner_here(cast, rule):
    other = alerts.alert_rule_create(
        workspace=cast.outsider.user.workspaces.get(),
        user=cast.outsider.user,
        name="theirs",
        statuses=["Failed"],
        channel="email",
        recipients="x@example.com",
    )
    client = browser(cast.owner)

    assert client.get(f"/w/lab/alerts/{other.pk}/").status_code == 404
    assert client.post(f"/w/lab/alerts/{other.pk}/delete/").status_code == 404
    assert AlertRule.objects.filter(pk=other.pk).exists()


def test_anonymous_visitors_are_sent_to_sign_in(cast, rule):
    response = Client().get("/w/lab/alerts/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_owner_creates_edits_rotates_and_deletes_a_rule(cast, rule):
    client = browser(cast.owner)

    created = client.post("/w/lab/alerts/new/", NEW_RULE)
    assert created.status_code == 302 and created["Location"] == "/w/lab/alerts/"
    new = AlertRule.objects.get(name="done")
    assert (new.statuses, new.channel, new.recipient_list) == (
        ["Completed", "Failed"],
        "email",
        ["team@example.com"],
    )
    assert new.experiment is None and new.enabled and new.created_by == cast.owner.user

    form = client.get(f"/w/lab/alerts/{new.pk}/")
    assert form.status_code == 200 and 'value="team@example.com"' not in form.content.decode()
    assert "team@example.com" in form.content.decode()  # in the textarea
    edited = client.post(
        f"/w/lab/alerts/{new.pk}/",
        {**NEW_RULE, "statuses": ["Canceled"], "experiment": "exp", "enabled": ""},
    )
    assert edited.status_code == 302
    new.refresh_from_db()
    assert (new.statuses, new.experiment.name, new.enabled) == (["Canceled"], "exp", False)

    old_secret = rule.secret
    assert client.post(f"/w/lab/alerts/{rule.pk}/secret/").status_code == 302
    rule.refresh_from_db()
    assert rule.secret != old_secret

    assert client.post(f"/w/lab/alerts/{new.pk}/delete/").status_code == 302
    assert list(AlertRule.objects.values_list("name", flat=True)) == ["night watch"]


def test_a_bad_rule_shows_the_form_again_with_the_error_on_its_field(cast, rule):
    response = browser(cast.owner).post(
        "/w/lab/alerts/new/", {**NEW_RULE, "recipients": "team at example dot com"}
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "is not an e-mail address" in html
    assert "team at example dot com" in html  # what was typed is kept
    assert AlertRule.objects.count() == 1


def test_alert_forms_need_the_csrf_token(cast, rule):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.owner.user)

    assert client.post("/w/lab/alerts/new/", NEW_RULE).status_code == 403
    assert client.post(f"/w/lab/alerts/{rule.pk}/delete/").status_code == 403
    assert AlertRule.objects.count() == 1
    page = client.get("/w/lab/alerts/").content.decode()
    assert page.count('name="csrfmiddlewaretoken"') >= 3  # create, delete, new secret


def test_recent_deliveries_show_what_was_sent_and_what_failed(cast, rule, make_run):
    run = make_run("exp", display_name="bert-large")
    event = StatusEvent.objects.create(run=run, from_status="Running", to_status="Failed")
    AlertDelivery.objects.create(
        rule=rule, event=event, attempt=1, status="failed", response_code=502, error="HTTP 502"
    )
    AlertDelivery.objects.create(
        rule=rule, event=event, attempt=2, status="sent", response_code=200
    )

    html = browser(cast.reader).get("/w/lab/alerts/").content.decode()

    assert "bert-large" in html and f"/w/lab/runs/{run.run_id}/" in html
    assert "Failed · 502" in html and "Sent · 200" in html and "HTTP 502" in html
