"""Alert rules: a workspace's status events become e-mails or signed webhook POSTs.

The rule services (writes) and the delivery tasks; the reads are in runs/selectors.py. Who
may change rules is decided by the doors through runs/access.py (owners), not here.

Nothing is sent inside the request that changed a status: `run_set_status` calls
`event_published` through `transaction.on_commit`, which enqueues one `alert_event_dispatch`
task per event (only when the workspace has an enabled rule). The task, run by a worker, finds
the matching rules and delivers; a failed delivery is retried by re-enqueueing
`alert_delivery_retry` with `run_after` = now + exponential backoff. Every attempt is an
`AlertDelivery` row, created before sending, so a task that runs twice does not send twice.

Webhook requests carry `X-Runstudio-Timestamp: <unix seconds>` and
`X-Runstudio-Signature: sha256=<hex>`, the HMAC-SHA256 with the rule's secret over
`<timestamp>.<raw body>`; see docs/architecture.md for how a receiver checks them.
"""

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from functools import partial

import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.tasks import task, task_backends
from django.utils import timezone

from runs import selectors
from runs.errors import Conflict, InvalidInput
from runs.links import portal_url
from runs.models import (
    AlertChannel,
    AlertDelivery,
    AlertDeliveryStatus,
    AlertRule,
    RunStatus,
    StatusEvent,
    Workspace,
)
from runs.validation import check_line

logger = logging.getLogger(__name__)

RULE_NAME_MAX_LENGTH = 100
MAX_RECIPIENTS = 20
WEBHOOK_URL_MAX_LENGTH = 2000
ERROR_MAX_LENGTH = 2000
SIGNATURE_HEADER = "X-Runstudio-Signature"
TIMESTAMP_HEADER = "X-Runstudio-Timestamp"
EVENT_TYPE = "run.status_changed"


# ---------------------------------------------------------------------------------------------
# settings (read when used, never at import)


def alerts_queue() -> str:
    return settings.RUNSTUDIO_ALERTS_QUEUE


def max_attempts() -> int:
    return max(1, settings.RUNSTUDIO_ALERT_ATTEMPTS)


def backoff(attempt: int) -> timedelta:
    """Delay before attempt `attempt + 1`: base, 2×base, 4×base… capped at an hour."""
    base = settings.RUNSTUDIO_ALERT_BACKOFF
    return timedelta(seconds=min(base * 2 ** (attempt - 1), 3600))


# ---------------------------------------------------------------------------------------------
# rule services (the doors let owners only call them: runs/access.py)


def _check_statuses(value) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise InvalidInput(
            "statuses: choose at least one status that fires the rule, e.g. Failed.",
            field="statuses",
        )
    unknown = [s for s in value if s not in RunStatus.values]
    if unknown:
        raise InvalidInput(
            f"statuses: {unknown[0]!r} is not a run status; use one of "
            f"{', '.join(RunStatus.values)}.",
            field="statuses",
        )
    return [s for s in RunStatus.values if s in value]  # lifecycle order, no duplicates


def _check_recipients(value) -> str:
    # A list (the API) holds addresses, each one; a text (the page's box) may have blank lines.
    if isinstance(value, list) and not all(isinstance(a, str) and a.strip() for a in value):
        raise InvalidInput("recipients: each entry must be an e-mail address.", field="recipients")
    if isinstance(value, str):
        value = value.replace(",", "\n").replace(";", "\n").splitlines()
    if not isinstance(value, list | tuple):
        raise InvalidInput("recipients: give a list of e-mail addresses.", field="recipients")
    addresses = []
    for raw in value:
        address = str(raw).strip()
        if not address or address in addresses:
            continue
        try:
            validate_email(address)
        except ValidationError:
            raise InvalidInput(
                f"recipients: {address!r} is not an e-mail address.", field="recipients"
            ) from None
        addresses.append(address)
    if not addresses:
        raise InvalidInput(
            "recipients: an e-mail rule needs at least one address.", field="recipients"
        )
    if len(addresses) > MAX_RECIPIENTS:
        raise InvalidInput(
            f"recipients: {len(addresses)} addresses; the limit is {MAX_RECIPIENTS} per rule. "
            "Use a mailing list address.",
            field="recipients",
        )
    return "\n".join(addresses)


def _check_url(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("webhook_url: a webhook rule needs a URL.", field="webhook_url")
    value = value.strip()
    if len(value) > WEBHOOK_URL_MAX_LENGTH:
        raise InvalidInput(
            f"webhook_url: is {len(value)} characters long; the limit is {WEBHOOK_URL_MAX_LENGTH}.",
            field="webhook_url",
        )
    try:
        URLValidator(schemes=["http", "https"])(value)
    except ValidationError:
        raise InvalidInput(
            f"webhook_url: {value!r} is not an http:// or https:// URL.", field="webhook_url"
        ) from None
    return value


def _check_experiment(workspace: Workspace, name):
    if name in (None, ""):
        return None
    experiment = workspace.experiments.filter(name=name).first()
    if experiment is None:
        raise InvalidInput(
            f"experiment: workspace {workspace.name!r} has no experiment named {name!r}.",
            field="experiment",
        )
    return experiment


def _check_name(value) -> str:
    value = check_line(value, field="name", max_length=RULE_NAME_MAX_LENGTH).strip()
    if not value:
        raise InvalidInput("name: give the rule a name.", field="name")
    return value


def _apply(rule: AlertRule, *, channel, recipients, webhook_url) -> None:
    # The field the channel does not use is ignored, but not whatever its type: {} is a 400.
    if not isinstance(webhook_url, str | None):
        raise InvalidInput("webhook_url: must be a URL (a string).", field="webhook_url")
    if not isinstance(recipients, str | list | tuple) or (
        not isinstance(recipients, str) and not all(isinstance(a, str) for a in recipients)
    ):
        raise InvalidInput("recipients: give a list of e-mail addresses.", field="recipients")
    if channel not in AlertChannel.values:
        raise InvalidInput(
            f"channel: {channel!r} is not a channel; use one of {', '.join(AlertChannel.values)}.",
            field="channel",
        )
    rule.channel = channel
    if channel == AlertChannel.EMAIL:
        rule.recipients, rule.webhook_url = _check_recipients(recipients), ""
    else:
        rule.webhook_url, rule.recipients = _check_url(webhook_url), ""
        if not rule.secret:
            rule.secret = new_secret()


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def alert_rule_create(
    *,
    workspace: Workspace,
    user: AbstractBaseUser,
    name: str,
    statuses: list[str],
    channel: str,
    experiment: str | None = None,
    recipients: str | list[str] = "",
    webhook_url: str = "",
    enabled: bool = True,
) -> AlertRule:
    rule = alert_rule_validate(
        workspace=workspace,
        name=name,
        statuses=statuses,
        channel=channel,
        experiment=experiment,
        recipients=recipients,
        webhook_url=webhook_url,
        enabled=enabled,
    )
    rule.created_by = user if user.is_authenticated else None
    _save(rule)
    return rule


def alert_rule_validate(
    *,
    workspace: Workspace,
    name: str,
    statuses: list[str],
    channel: str,
    experiment: str | None = None,
    recipients: str | list[str] = "",
    webhook_url: str = "",
    enabled: bool = True,
) -> AlertRule:
    """The rule these values make, checked but not saved: InvalidInput names the field. The
    admin's form calls it so that it refuses what the API and the pages refuse."""
    rule = AlertRule(
        workspace=workspace,
        name=_check_name(name),
        statuses=_check_statuses(statuses),
        experiment=_check_experiment(workspace, experiment),
        enabled=_check_enabled(enabled),
    )
    _apply(rule, channel=channel, recipients=recipients, webhook_url=webhook_url)
    return rule


def _check_enabled(value) -> bool:
    # bool() would take {} for false and "no" for true.
    if not isinstance(value, bool):
        raise InvalidInput(f"enabled: {value!r} is not true or false.", field="enabled")
    return value


_UNSET = object()


def alert_rule_update(
    *,
    rule: AlertRule,
    user: AbstractBaseUser,
    name=_UNSET,
    statuses=_UNSET,
    channel=_UNSET,
    experiment=_UNSET,
    recipients=_UNSET,
    webhook_url=_UNSET,
    enabled=_UNSET,
) -> AlertRule:
    """Changes the given fields; the others keep their values. `user` is who asked (the
    doors check that they are an owner)."""
    if name is not _UNSET:
        rule.name = _check_name(name)
    if statuses is not _UNSET:
        rule.statuses = _check_statuses(statuses)
    if experiment is not _UNSET:
        rule.experiment = _check_experiment(rule.workspace, experiment)
    if enabled is not _UNSET:
        rule.enabled = _check_enabled(enabled)
    if not (channel is recipients is webhook_url is _UNSET):
        _apply(
            rule,
            channel=rule.channel if channel is _UNSET else channel,
            recipients=rule.recipients if recipients is _UNSET else recipients,
            webhook_url=rule.webhook_url if webhook_url is _UNSET else webhook_url,
        )
    _save(rule)
    return rule


def _save(rule: AlertRule) -> None:
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise Conflict(
            f"name: workspace {rule.workspace.name!r} already has an alert rule named "
            f"{rule.name!r}; choose another name.",
            field="name",
        ) from None


def alert_rule_rotate_secret(*, rule: AlertRule, user: AbstractBaseUser) -> AlertRule:
    rule.secret = new_secret()
    rule.save(update_fields=["secret", "updated_at"])
    return rule


def alert_rule_delete(*, rule: AlertRule, user: AbstractBaseUser) -> None:
    rule.delete()


# ---------------------------------------------------------------------------------------------
# the hook run_set_status calls after commit, and the tasks


def event_published(*, event_id: int, workspace_id: int) -> None:
    """Called on commit of a status change: one dispatch task per event, if any rule could
    match (a workspace without enabled rules costs one indexed EXISTS, no task)."""
    if not AlertRule.objects.filter(workspace_id=workspace_id, enabled=True).exists():
        return
    alert_event_dispatch.using(queue_name=alerts_queue()).enqueue(event_id)


def on_status_event(event: StatusEvent) -> None:
    """Registers `event_published` to run once the status change commits. robust=True: a
    queue that cannot take the task is logged, never turned into an error for a change
    that is already stored."""
    transaction.on_commit(
        partial(event_published, event_id=event.pk, workspace_id=event.run.workspace_id),
        robust=True,
    )


@task
def alert_event_dispatch(event_id: int) -> int:
    """Delivers one status event through every matching rule; returns how many matched."""
    event = (
        StatusEvent.objects.select_related("run__workspace", "run__experiment", "by")
        .filter(pk=event_id)
        .first()
    )
    if event is None:  # the run was deleted meanwhile
        return 0
    rules = selectors.alert_rules_matching(event=event)
    for rule in rules:
        deliver(rule=rule, event=event, attempt=1)
    return len(rules)


@task
def alert_delivery_retry(rule_id: int, event_id: int, attempt: int) -> str:
    rule = AlertRule.objects.filter(pk=rule_id, enabled=True).first()
    event = (
        StatusEvent.objects.select_related("run__workspace", "run__experiment", "by")
        .filter(pk=event_id)
        .first()
    )
    if rule is None or event is None:  # deleted or disabled since: drop the retry
        return "dropped"
    delivery = deliver(rule=rule, event=event, attempt=attempt)
    return delivery.status if delivery else "duplicate"


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, response_code: int | None = None):
        super().__init__(message)
        self.response_code = response_code


def deliver(*, rule: AlertRule, event: StatusEvent, attempt: int) -> AlertDelivery | None:
    """One attempt: record it, send, record the outcome, schedule the next on failure.
    Returns None when this attempt was already made (the task ran twice)."""
    try:
        with transaction.atomic():
            delivery = AlertDelivery.objects.create(rule=rule, event=event, attempt=attempt)
    except IntegrityError:
        return None
    try:
        if rule.channel == AlertChannel.EMAIL:
            send_email(rule=rule, event=event)
        else:
            delivery.response_code = send_webhook(rule=rule, event=event, attempt=attempt)
    except DeliveryFailed as exc:
        delivery.status = AlertDeliveryStatus.FAILED
        delivery.response_code = exc.response_code
        delivery.error = str(exc)[:ERROR_MAX_LENGTH]
        if attempt < max_attempts():
            delivery.next_attempt_at = timezone.now() + backoff(attempt)
    else:
        delivery.status = AlertDeliveryStatus.SENT
    delivery.save(update_fields=["status", "response_code", "error", "next_attempt_at"])
    if delivery.next_attempt_at:
        _schedule_retry(delivery)
    return delivery


def _schedule_retry(delivery: AlertDelivery) -> None:
    retry = alert_delivery_retry.using(queue_name=alerts_queue())
    if task_backends[retry.backend].supports_defer:
        retry = retry.using(run_after=delivery.next_attempt_at)
    # Backends without run_after (the Immediate one, in development) retry at once.
    retry.enqueue(delivery.rule_id, delivery.event_id, delivery.attempt + 1)


# ---------------------------------------------------------------------------------------------
# what is sent


def event_payload(event: StatusEvent, *, rule: AlertRule | None = None) -> dict:
    run = event.run
    payload = {
        "type": EVENT_TYPE,
        "event_id": event.pk,
        "run_id": run.run_id,
        "display_name": run.display_name,
        "workspace": run.workspace.name,
        "experiment": run.experiment.name,
        "from": event.from_status or None,
        "to": event.to_status,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "by": event.by.get_username() if event.by else None,
        "reason": event.reason,
        "error": (
            {"code": run.error_code, "message": run.error_message}
            if event.to_status == RunStatus.FAILED and (run.error_code or run.error_message)
            else None
        ),
        "portal_url": portal_url(run, None),
    }
    if rule is not None:
        payload["rule"] = rule.name
    return payload


def sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send_webhook(*, rule: AlertRule, event: StatusEvent, attempt: int) -> int:
    body = json.dumps(event_payload(event, rule=rule), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Runstudio-Webhook/1",
        "X-Runstudio-Event": EVENT_TYPE,
        # Stable across attempts, so a receiver can drop a retry it already handled.
        "X-Runstudio-Delivery": f"{rule.pk}-{event.pk}",
        "X-Runstudio-Attempt": str(attempt),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret=rule.secret, timestamp=timestamp, body=body),
    }
    try:
        response = requests.post(
            rule.webhook_url,
            data=body,
            headers=headers,
            timeout=settings.RUNSTUDIO_ALERT_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(
            f"HTTP {response.status_code}: {response.text[:500]}",
            response_code=response.status_code,
        )
    return response.status_code


def email_message(*, rule: AlertRule, event: StatusEvent) -> EmailMessage:
    payload = event_payload(event)
    run = event.run
    title = run.display_name or run.run_id
    lines = [
        f"Run {run.run_id} in experiment {payload['experiment']} (workspace "
        f"{payload['workspace']}) changed status: {payload['from'] or '—'} → {payload['to']}.",
        "",
        f"Run:        {title}",
        f"When:       {payload['at']}",
        f"By:         {payload['by'] or 'the system'}",
    ]
    if event.reason:
        lines.append(f"Reason:     {event.reason}")
    if payload["error"]:
        lines.append(f"Error:      {payload['error']['code']}: {payload['error']['message']}")
    lines += ["", f"Open the run: {payload['portal_url']}", "", f"— alert rule “{rule.name}”"]
    return EmailMessage(
        subject=f"[Runstudio] {title} is {event.to_status}",
        body="\n".join(lines),
        to=rule.recipient_list,
    )


def send_email(*, rule: AlertRule, event: StatusEvent) -> None:
    try:
        email_message(rule=rule, event=event).send(fail_silently=False)
    except Exception as exc:  # smtplib and socket errors have no common base worth naming
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
