"""The alerts page: a workspace's alert rules and what they sent. Everyone in the workspace
sees the rules and deliveries; only owners create, change and delete them
(runs/services/alerts.py)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from runs import selectors
from runs.errors import Conflict, InvalidInput
from runs.models import AlertChannel, Role, RunStatus
from runs.services import alerts
from runs.views.common import load_workspace


class AlertRuleForm(forms.Form):
    name = forms.CharField(max_length=alerts.RULE_NAME_MAX_LENGTH)
    statuses = forms.MultipleChoiceField(
        choices=RunStatus.choices, widget=forms.CheckboxSelectMultiple
    )
    experiment = forms.ChoiceField(required=False)
    channel = forms.ChoiceField(
        choices=AlertChannel.choices, initial=AlertChannel.EMAIL, widget=forms.RadioSelect
    )
    recipients = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    webhook_url = forms.CharField(required=False, max_length=alerts.WEBHOOK_URL_MAX_LENGTH)
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        names = workspace.experiments.values_list("name", flat=True)
        self.fields["experiment"].choices = [("", "Any experiment")] + [(n, n) for n in names]

    @classmethod
    def for_rule(cls, rule):
        initial = {
            "name": rule.name,
            "statuses": rule.statuses,
            "experiment": rule.experiment.name if rule.experiment else "",
            "channel": rule.channel,
            "recipients": rule.recipients,
            "webhook_url": rule.webhook_url,
            "enabled": rule.enabled,
        }
        return cls(initial=initial, workspace=rule.workspace)

    def save(self, *, user, rule=None):
        """Creates or updates through the services; their errors land on the named field."""
        data = self.cleaned_data
        fields = {key: data[key] for key in self.fields}
        try:
            if rule is None:
                return alerts.alert_rule_create(workspace=self.workspace, user=user, **fields)
            return alerts.alert_rule_update(rule=rule, user=user, **fields)
        except (InvalidInput, Conflict) as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
            return None


def _render(request, ws, membership, *, form=None, rule=None, status=200):
    is_owner = membership.allows(Role.OWNER)
    context = {
        "workspace": ws,
        "membership": membership,
        "nav_section": "alerts",
        "is_owner": is_owner,
        "rules": selectors.alert_rule_list(workspace=ws),
        "deliveries": selectors.alert_delivery_list(workspace=ws),
        "form": form or (AlertRuleForm(workspace=ws) if is_owner else None),
        "editing": rule,
    }
    return render(request, "runs/alerts.html", context, status=status)


@login_required
def alerts_page(request, workspace: str):
    ws, membership = load_workspace(request, workspace)
    return _render(request, ws, membership)


@login_required
@require_POST
def alert_create(request, workspace: str):
    ws, membership = load_workspace(request, workspace, role=Role.OWNER)
    form = AlertRuleForm(request.POST, workspace=ws)
    rule = form.save(user=request.user) if form.is_valid() else None
    if rule is None:
        return _render(request, ws, membership, form=form, status=400)
    messages.success(request, f"Created alert rule “{rule.name}”.")
    return redirect("runs:alerts", ws.name)


@login_required
def alert_edit(request, workspace: str, rule_id: int):
    ws, membership = load_workspace(request, workspace, role=Role.OWNER)
    rule = get_object_or_404(ws.alert_rules, pk=rule_id)
    if request.method != "POST":
        return _render(request, ws, membership, form=AlertRuleForm.for_rule(rule), rule=rule)
    form = AlertRuleForm(request.POST, workspace=ws)
    if not form.is_valid() or form.save(user=request.user, rule=rule) is None:
        return _render(request, ws, membership, form=form, rule=rule, status=400)
    messages.success(request, f"Saved alert rule “{rule.name}”.")
    return redirect("runs:alerts", ws.name)


@login_required
@require_POST
def alert_delete(request, workspace: str, rule_id: int):
    ws, _ = load_workspace(request, workspace, role=Role.OWNER)
    rule = get_object_or_404(ws.alert_rules, pk=rule_id)
    alerts.alert_rule_delete(rule=rule, user=request.user)
    messages.success(request, f"Deleted alert rule “{rule.name}”.")
    return redirect("runs:alerts", ws.name)


@login_required
@require_POST
def alert_rotate_secret(request, workspace: str, rule_id: int):
    ws, _ = load_workspace(request, workspace, role=Role.OWNER)
    rule = get_object_or_404(ws.alert_rules, pk=rule_id, channel=AlertChannel.WEBHOOK)
    alerts.alert_rule_rotate_secret(rule=rule, user=request.user)
    messages.success(
        request, f"New signing secret for “{rule.name}”: update the receiver to use it."
    )
    return redirect("runs:alerts", ws.name)
