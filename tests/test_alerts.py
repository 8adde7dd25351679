"""Alert rules turn status events into e-mails and signed webhooks, sent by tasks.

The tasks run for real: either Django's DummyBackend collects them and `drain()` plays the
worker (calling each queued task, in order), or django-tasks-db's DatabaseBackend queues them
and the real `db_worker --batch` runs them. Webhooks go to a real HTTP server on 127.0.0.1.
"""

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.tasks import task_backends
from django.utils import timezone

from runs import services
from runs.errors import InvalidInput
from runs.models import AlertDelivery, AlertRule, RunStatus
from runs.services import alerts

# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def dummy_tasks(settings):
    """Tasks are collected, not run: `drain()` runs them like a worker would."""
    settings.TASKS = {
        "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": []}
    }
    backend = task_backends["default"]
    backend.clear()
    return backend


def drain(backend, *, limit: int = 20) -> list:
    """Runs queued tasks in order (ignoring run_after: the test is the clock) until none are
    left; returns the results it ran, with their task's run_after."""
    ran = []
    while backend.results and len(ran) < limit:
        result = backend.results.pop(0)
        result.task.call(*result.args, **result.kwargs)
        ran.append(result)
    return ran


class Hook:
    """A local webhook receiver: records each request and answers from `codes` (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.codes: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append({"headers": dict(self.headers), "body": body})
                code = hook.codes.pop(0) if hook.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"receiver is down")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/runstudio"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    receiver = Hook()
    yield receiver
    receiver.close()


@pytest.fixture
def email_rule(cast):
    return alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="failures to the team",
        statuses=["Failed"],
        channel="email",
        recipients="ml-team@example.com\nolivia@example.com",
    )


def webhook_rule(cast, url, *, statuses=("Completed", "Failed"), **kwargs):
    return alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="to the chat bot",
        statuses=list(statuses),
        channel="webhook",
        webhook_url=url,
        **kwargs,
    )


def verify(secret: str, headers: dict, body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does (docs/architecture.md): recompute the HMAC over `<ts>.<body>`,
    compare in constant time, refuse old timestamps."""
    timestamp = headers["X-Runstudio-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    given = headers["X-Runstudio-Signature"].removeprefix("sha256=")
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(expected.hexdigest(), given)


# ---------------------------------------------------------------------------------------------
# e-mail, and the send happening in a task after commit


def test_a_failed_run_emails_the_rule_recipients_from_a_task_not_from_the_request(
    cast, make_run, email_rule, dummy_tasks, mailoutbox, django_capture_on_commit_callbacks
):
    run = make_run("exp", display_name="resnet-50")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = cast.contributor.client.post(
            f"/api/v1/runs/{run.run_id}/status",
            {"status": "Failed", "error": {"code": "UserError", "message": "CUDA out of memory"}},
            format="json",
        )
        assert response.status_code == 200, response.content
        # The request is over and its transaction not yet committed: nothing queued, nothing sent.
        assert dummy_tasks.results == []
        assert mailoutbox == []
    # On commit: exactly one task for the event, on the alerts queue — still nothing sent.
    assert len(callbacks) == 1
    [queued] = dummy_tasks.results
    assert queued.task.name == "alert_event_dispatch"
    assert queued.task.queue_name == "_alerts"
    assert mailoutbox == [] and not AlertDelivery.objects.exists()

    drain(dummy_tasks)  # the worker

    [mail] = mailoutbox
    assert mail.to == ["ml-team@example.com", "olivia@example.com"]
    assert mail.subject == "[Runstudio] resnet-50 is Failed"
    assert "Running → Failed" in mail.body
    assert "UserError: CUDA out of memory" in mail.body
    assert f"/w/lab/runs/{run.run_id}/" in mail.body
    assert "By:         carl" in mail.body
    delivery = AlertDelivery.objects.get()
    assert (delivery.rule, delivery.attempt, delivery.status) == (email_rule, 1, "sent")
    assert delivery.event.to_status == "Failed"


@pytest.mark.django_db(transaction=True)
def test_the_real_db_worker_sends_the_email_the_status_change_queued(
    cast, make_run, email_rule, mailoutbox, settings
):
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}
    run = make_run("exp")

    services.run_set_status(run=run, status=RunStatus.FAILED, by=cast.contributor.user)

    # Committed: the task waits in the database; nothing was sent by the change itself.
    [queued] = DBTaskResult.objects.filter(queue_name="_alerts")
    assert queued.task_path == "runs.services.alerts.alert_event_dispatch"
    assert mailoutbox == []

    call_command(
        "db_worker",
        queue_name="_alerts",
        batch=True,
        reload=False,
        startup_delay=False,
        verbosity=0,
    )

    assert len(mailoutbox) == 1
    assert DBTaskResult.objects.get(pk=queued.pk).status == "SUCCESSFUL"
    assert AlertDelivery.objects.get().status == "sent"


def test_a_workspace_without_rules_queues_no_task(
    cast, make_run, dummy_tasks, django_capture_on_commit_callbacks
):
    run = make_run("exp")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_set_status(run=run, status=RunStatus.COMPLETED)

    assert dummy_tasks.results == []


def test_a_status_change_that_matches_no_rule_sends_nothing(
    cast, make_run, email_rule, hook, dummy_tasks, mailoutbox, django_capture_on_commit_callbacks
):
    webhook_rule(cast, hook.url, statuses=["Canceled"])
    run = make_run("exp")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_set_status(run=run, status=RunStatus.COMPLETED)  # rules want Failed, Canceled

    drain(dummy_tasks)

    assert mailoutbox == [] and hook.requests == []
    assert not AlertDelivery.objects.exists()


def test_rules_fire_by_status_and_by_experiment(
    cast, make_run, dummy_tasks, mailoutbox, django_capture_on_commit_callbacks
):
    in_exp, in_other = make_run("exp"), make_run("other")

    def rule(name, statuses, experiment=None):
        return alerts.alert_rule_create(
            workspace=cast.workspace,
            user=cast.owner.user,
            name=name,
            statuses=statuses,
            channel="email",
            recipients=f"{name}@example.com",
            experiment=experiment,
        )

    rule("any-failure", ["Failed"])
    rule("exp-done", ["Completed", "Canceled"], experiment="exp")
    rule("other-done", ["Completed"], experiment="other")
    off = rule("off", ["Completed", "Failed"])
    alerts.alert_rule_update(rule=off, user=cast.owner.user, enabled=False)

    with django_capture_on_commit_callbacks(execute=True):
        services.run_set_status(run=in_exp, status=RunStatus.COMPLETED)
        services.run_set_status(run=in_other, status=RunStatus.FAILED)
    drain(dummy_tasks)

    sent = sorted((m.to[0], m.subject.rsplit(" ", 1)[1]) for m in mailoutbox)
    assert sent == [("any-failure@example.com", "Failed"), ("exp-done@example.com", "Completed")]


def test_a_dispatch_task_that_runs_twice_sends_once(
    cast, make_run, email_rule, dummy_tasks, mailoutbox, django_capture_on_commit_callbacks
):
    run = make_run("exp")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_set_status(run=run, status=RunStatus.FAILED)
    [queued] = dummy_tasks.results

    queued.task.call(*queued.args)
    queued.task.call(*queued.args)  # a worker died after sending and the task ran again

    assert len(mailoutbox) == 1
    assert AlertDelivery.objects.count() == 1


# ---------------------------------------------------------------------------------------------
# webhooks


def test_a_webhook_gets_the_event_as_json_with_a_valid_signature(
    cast, make_run, hook, dummy_tasks, django_capture_on_commit_callbacks
):
    rule = webhook_rule(cast, hook.url)
    run = make_run("exp", display_name="bert")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_set_status(run=run, status=RunStatus.COMPLETED, by=cast.contributor.user)

    drain(dummy_tasks)

    [request] = hook.requests
    headers, body = request["headers"], request["body"]
    assert rule.secret.startswith("whsec_")
    assert verify(rule.secret, headers, body)
    assert not verify("whsec_someone-else", headers, body)
    assert not verify(rule.secret, headers, body.replace(b"Completed", b"Failed"))
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Runstudio-Event"] == "run.status_changed"
    assert headers["X-Runstudio-Attempt"] == "1"
    event = json.loads(body)
    assert event["run_id"] == run.run_id
    assert event["display_name"] == "bert"
    assert (event["workspace"], event["experiment"]) == ("lab", "exp")
    assert (event["from"], event["to"], event["by"]) == ("Running", "Completed", "carl")
    assert event["at"].endswith("Z")
    assert event["portal_url"].endswith(f"/w/lab/runs/{run.run_id}/")
    assert event["rule"] == "to the chat bot" and event["error"] is None
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.response_code) == ("sent", 200)


def test_an_old_signed_request_is_refused_by_the_documented_check(cast, make_run):
    body = b'{"to":"Failed"}'
    old = str(int(time.time()) - 3600)
    headers = {
        "X-Runstudio-Timestamp": old,
        "X-Runstudio-Signature": alerts.sign(secret="whsec_x", timestamp=old, body=body),
    }

    assert not verify("whsec_x", headers, body)  # a replay an hour later
    assert verify("whsec_x", headers, body, tolerance=7200)


def test_a_failing_webhook_is_retried_with_exponential_backoff_and_each_attempt_recorded(
    cast, make_run, hook, dummy_tasks, settings, django_capture_on_commit_callbacks
):
    settings.RUNSTUDIO_ALERT_BACKOFF = 30
    hook.codes = [500, 503]  # then 200
    webhook_rule(cast, hook.url)
    run = make_run("exp")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_set_status(run=run, status=RunStatus.FAILED)

    started = timezone.now()
    ran = drain(dummy_tasks)

    assert [r.task.name for r in ran] == [
        "alert_event_dispatch",
        "alert_delivery_retry",
        "alert_delivery_retry",
    ]
    # Each retry was deferred with run_after: 30 s after the first failure, then 60 s.
    delays = [(r.task.run_after - started).total_seconds() for r in ran[1:]]
    assert 25 < delays[0] < 40 and 55 < delays[1] < 70
    assert all(r.task.queue_name == "_alerts" for r in ran)
    attempts = list(AlertDelivery.objects.order_by("attempt"))
    assert [(d.attempt, d.status, d.response_code) for d in attempts] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "sent", 200),
    ]
    assert "HTTP 500: receiver is down" in attempts[0].error
    assert attempts[0].next_attempt_at and attempts[2].next_attempt_at is None
    assert [r["headers"]["X-Runstudio-Attempt"] for r in hook.requests] == ["1", "2", "3"]
    # A receiver can drop repeats: the delivery id is the same on every attempt.
    assert len({r["headers"]["X-Runstudio-Delivery"] for r in hook.requests}) == 1


def test_a_webhook_that_never_answers_gives_up_after_the_last_attempt(
    cast, make_run, dummy_tasks, settings, django_capture_on_commit_callbacks
):
    settings.RUNSTUDIO_ALERT_ATTEMPTS = 3
    dead = Hook()
    url = dead.url
    dead.close()  # nothing listens there any more: connection refused
    webhook_rule(cast, url)
    run = make_run("exp")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_set_status(run=run, status=RunStatus.FAILED)

    drain(dummy_tasks)

    attempts = list(AlertDelivery.objects.order_by("attempt"))
    assert [(d.attempt, d.status) for d in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    assert "ConnectionError" in attempts[0].error
    assert attempts[-1].next_attempt_at is None  # given up
    assert dummy_tasks.results == []


def test_backoff_doubles_and_is_capped_at_an_hour(settings):
    settings.RUNSTUDIO_ALERT_BACKOFF = 30
    assert [alerts.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert alerts.backoff(20) == timedelta(hours=1)


# ---------------------------------------------------------------------------------------------
# rule services


def test_only_owners_manage_alert_rules(cast, email_rule):
    """The owner check is the doors' (runs/access.py), so it is tested at a door."""
    url = "/api/v1/workspaces/lab/alert-rules"
    rule_url = f"{url}/{email_rule.name}"
    for member in (cast.contributor, cast.reader):
        create = member.client.post(
            url,
            {"name": "x", "statuses": ["Failed"], "channel": "email", "recipients": "a@x.test"},
            format="json",
        )
        assert create.status_code == 403
        assert "needs the owner role" in create.json()["error"]["message"]
        assert member.client.patch(rule_url, {"name": "mine"}, format="json").status_code == 403
        assert member.client.delete(rule_url).status_code == 403
    assert AlertRule.objects.get().name == "failures to the team"


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"statuses": []}, "statuses", "at least one status"),
        ({"statuses": ["Exploded"]}, "statuses", "'Exploded' is not a run status"),
        ({"recipients": "not-an-address"}, "recipients", "is not an e-mail address"),
        ({"recipients": ""}, "recipients", "at least one address"),
        ({"channel": "webhook", "webhook_url": "ftp://x"}, "webhook_url", "http:// or https://"),
        ({"channel": "pigeon"}, "channel", "is not a channel"),
        ({"experiment": "nope"}, "experiment", "no experiment named 'nope'"),
        ({"name": "  "}, "name", "give the rule a name"),
    ],
)
def test_bad_rule_input_is_refused_naming_the_field(cast, fields, field, says):
    values = {
        "name": "r",
        "statuses": ["Failed"],
        "channel": "email",
        "recipients": "a@example.com",
        **fields,
    }
    with pytest.raises(InvalidInput, match=says) as caught:
        alerts.alert_rule_create(workspace=cast.workspace, user=cast.owner.user, **values)
    assert caught.value.field == field
    assert not AlertRule.objects.exists()


def test_changing_a_rule_to_a_webhook_gives_it_a_secret_and_rotation_replaces_it(cast, email_rule):
    assert email_rule.secret == ""
    rule = alerts.alert_rule_update(
        rule=email_rule, user=cast.owner.user, channel="webhook", webhook_url="https://x.test/h"
    )
    first = rule.secret
    assert first.startswith("whsec_") and rule.recipients == ""

    alerts.alert_rule_rotate_secret(rule=rule, user=cast.owner.user)

    assert AlertRule.objects.get().secret not in ("", first)


def test_statuses_are_kept_in_lifecycle_order_without_repeats(cast):
    rule = alerts.alert_rule_create(
        workspace=cast.workspace,
        user=cast.owner.user,
        name="r",
        statuses=["Failed", "Completed", "Failed", "Queued"],
        channel="email",
        recipients="a@example.com, b@example.com",
    )
    assert rule.statuses == ["Queued", "Completed", "Failed"]
    assert rule.recipient_list == ["a@example.com", "b@example.com"]


# ---------------------------------------------------------------------------------------------
# REST API (who may pass is in tests/test_api_access.py's door table)


def test_the_api_shows_the_secret_to_owners_only_and_names_bad_fields(cast, hook):
    rule = webhook_rule(cast, hook.url)

    owner = cast.owner.client.get("/api/v1/workspaces/lab/alert-rules").json()["results"]
    reader = cast.reader.client.get("/api/v1/workspaces/lab/alert-rules/to the chat bot").json()

    assert owner[0]["secret"] == rule.secret and owner[0]["webhook_url"] == hook.url
    assert "secret" not in reader and reader["statuses"] == ["Completed", "Failed"]
    bad = cast.owner.client.post(
        "/api/v1/workspaces/lab/alert-rules",
        {"name": "x", "statuses": ["Failed"], "channel": "email", "recipients": ["nope"]},
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "recipients"
    again = cast.owner.client.post(
        "/api/v1/workspaces/lab/alert-rules",
        {"name": "to the chat bot", "statuses": ["Failed"], "channel": "webhook",
         "webhook_url": hook.url},
        format="json",
    )  # fmt: skip
    assert again.status_code == 409 and again.json()["error"]["field"] == "name"
