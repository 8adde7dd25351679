"""The admin for staff. It is one more door, so it writes only through runs/services/ and is
read-only where an invariant forbids change: properties, status history, metric summaries,
batches and the file index. See docs/architecture.md, "One door"."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.shortcuts import redirect

from runs import services
from runs.errors import ServiceError
from runs.models import (
    AlertChannel,
    AlertDelivery,
    AlertRule,
    ApiToken,
    ComputeTarget,
    CustomView,
    Experiment,
    Invitation,
    Membership,
    MetricBatch,
    MetricSeries,
    Role,
    Run,
    RunFile,
    RunProperty,
    RunTag,
    StatusEvent,
    Worker,
    Workspace,
)
from runs.services import alerts


class ReadOnlyMixin:
    """Shown, never written: the rows are kept consistent by the services that make them."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class CascadeMixin:
    """The records a delete takes along (a run's events, a rule's deliveries, a user's tokens)
    go through the owning service; that their own admins are read-only must not stop it."""

    def get_deleted_objects(self, objs, request):
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected


class MembershipInline(ReadOnlyMixin, admin.TabularInline):
    """Shown on the workspace; changed on the Memberships page, which keeps the last owner."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = fields


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    """Created by users (they become the owner); deleting one would leave its run files
    behind, and renaming one would break its URLs and its runs' id namespace."""

    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "created_at"] if obj is not None else []

    def has_add_permission(self, request) -> bool:
        return False  # a workspace is born with an owner: POST /api/v1/workspaces

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MembershipForm(forms.ModelForm):
    """Checks the change through the membership services' rules before anything is saved;
    save_model then makes it through the same service (which also holds the row lock)."""

    class Meta:
        model = Membership
        fields = ["workspace", "user", "role"]

    def clean(self):
        data = super().clean()
        workspace, user, role = data.get("workspace"), data.get("user"), data.get("role")
        if self.instance.pk is not None:
            workspace, user = self.instance.workspace, self.instance.user
        if workspace and user and role and role != Role.OWNER:
            try:
                services.membership_check_demotion(workspace=workspace, user=user)
            except ServiceError as exc:
                self.add_error("role", exc.message)
        return data


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipForm
    list_display = ["workspace", "user", "role"]
    list_filter = ["role"]
    search_fields = ["workspace__name", "user__username"]
    raw_id_fields = ["workspace", "user"]

    def get_readonly_fields(self, request, obj=None):
        return ["workspace", "user"] if obj is not None else []

    def save_model(self, request, obj, form, change) -> None:
        saved = services.membership_set(workspace=obj.workspace, user=obj.user, role=obj.role)
        obj.pk = saved.pk

    def delete_view(self, request, object_id, extra_context=None):
        # Refused before Django's confirmation page and its "deleted successfully" message.
        obj = self.get_object(request, object_id)
        if obj is not None and obj.role == Role.OWNER:
            try:
                services.membership_check_demotion(workspace=obj.workspace, user=obj.user)
            except ServiceError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
                return redirect("admin:runs_membership_change", obj.pk)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj) -> None:
        try:
            services.membership_remove(workspace=obj.workspace, user=obj.user)
        except ServiceError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def delete_queryset(self, request, queryset) -> None:
        for membership in queryset.select_related("workspace", "user"):
            self.delete_model(request, membership)


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Made by owners (POST …/members), used once by the invitee. Deleting one withdraws it."""

    list_display = ["username", "workspace", "role", "invited_by", "expires_at", "accepted_at"]
    search_fields = ["username", "workspace__name"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return True


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Tokens are made by signing in (the key is shown once, to its user); staff revoke."""

    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["user__username", "name", "prefix"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            services.token_revoke(token=token)

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None  # the changelist's revoke action; no edit form


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Experiments are made by the runs logged into them; deleting one would leave its runs'
    files behind (delete the runs instead)."""

    list_display = ["name", "workspace", "created_at"]
    list_filter = ["workspace"]
    search_fields = ["name"]


class RunTagInline(ReadOnlyMixin, admin.TabularInline):
    model = RunTag
    extra = 0
    fields = ["key", "value"]
    readonly_fields = fields


class RunPropertyInline(ReadOnlyMixin, admin.TabularInline):
    """Properties are an immutable audit record: no door changes or deletes one."""

    model = RunProperty
    extra = 0
    fields = ["key", "value"]
    readonly_fields = fields


class MetricSeriesInline(ReadOnlyMixin, admin.TabularInline):
    model = MetricSeries
    extra = 0
    fields = ["name", "kind", "count", "last_value", "min_value", "max_value", "last_step"]
    readonly_fields = fields


class StatusEventInline(ReadOnlyMixin, admin.TabularInline):
    model = StatusEvent
    extra = 0
    fields = ["from_status", "to_status", "at", "by", "reason"]
    readonly_fields = fields


@admin.register(Run)
class RunAdmin(CascadeMixin, admin.ModelAdmin):
    """Display name and description change through run_update; everything else is the
    record of what happened. Deleting goes through run_delete, which removes the files."""

    list_display = ["run_id", "display_name", "experiment", "status", "submitter", "created_at"]
    list_filter = ["status", "run_type", "workspace"]
    search_fields = ["run_id", "display_name", "description", "experiment__name"]
    fields = [
        "run_id",
        "workspace",
        "experiment",
        "parent",
        "display_name",
        "description",
        "status",
        "run_type",
        "submitter",
        "compute_target",
        "created_at",
        "started_at",
        "ended_at",
        "heartbeat_at",
        "error_code",
        "error_message",
    ]
    readonly_fields = [f for f in fields if f not in ("display_name", "description")]
    inlines = [RunTagInline, RunPropertyInline, MetricSeriesInline, StatusEventInline]

    def has_add_permission(self, request) -> bool:
        return False  # runs are started by the SDK, the API or a submission

    def save_model(self, request, obj, form, change) -> None:
        services.run_update(run=obj, display_name=obj.display_name, description=obj.description)

    def save_formset(self, request, form, formset, change) -> None:
        # The inlines are read-only: whatever a crafted POST holds, nothing of them is saved.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_view(self, request, object_id, extra_context=None):
        # Refused before Django's confirmation page and its "deleted successfully" message.
        obj = self.get_object(request, object_id)
        if obj is not None:
            try:
                services.run_check_deletable(run=obj)
            except ServiceError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
                return redirect("admin:runs_run_change", obj.pk)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj) -> None:
        try:
            services.run_delete(run=obj)
        except ServiceError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def delete_queryset(self, request, queryset) -> None:
        for run in queryset:
            if Run.objects.filter(pk=run.pk).exists():  # not gone with a deleted parent
                self.delete_model(request, run)


@admin.register(MetricSeries)
class MetricSeriesAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["run", "name", "kind", "count", "last_value", "min_value", "max_value"]
    list_filter = ["kind"]
    search_fields = ["name", "run__run_id"]


@admin.register(MetricBatch)
class MetricBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["run", "key", "points", "created_at"]


@admin.register(RunFile)
class RunFileAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["run", "path", "size", "updated_at"]
    search_fields = ["path", "run__run_id"]


@admin.register(StatusEvent)
class StatusEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["run", "from_status", "to_status", "at", "by"]
    list_filter = ["to_status"]


# --- Alerts (runs/services/alerts.py) ---------------------------------------------------------

_RULE_FIELDS = ["name", "statuses", "channel", "recipients", "webhook_url", "enabled"]


class AlertRuleForm(forms.ModelForm):
    """Validated by the alert service, so the admin refuses what the API and the pages
    refuse, with the same messages on the same fields."""

    class Meta:
        model = AlertRule
        fields = ["workspace", "experiment", *_RULE_FIELDS]

    def clean(self):
        data = super().clean()
        workspace = data.get("workspace") or getattr(self.instance, "workspace", None)
        if workspace is None:
            return data
        experiment = data.get("experiment")
        try:
            alerts.alert_rule_validate(
                workspace=workspace,
                experiment=experiment.name if experiment else None,
                **{key: data.get(key) for key in _RULE_FIELDS},
            )
        except ServiceError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(CascadeMixin, admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["name", "workspace", "channel", "statuses", "experiment", "enabled"]
    list_filter = ["channel", "enabled", "workspace"]
    search_fields = ["name", "workspace__name", "recipients", "webhook_url"]
    raw_id_fields = ["experiment"]
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request, obj=None):
        # The secret is made and rotated by the service (every webhook is signed).
        return ["workspace", "secret", "created_by"] if obj is not None else []

    def get_exclude(self, request, obj=None):
        return ["secret", "created_by"] if obj is None else []

    def save_model(self, request, obj, form, change) -> None:
        values = {key: getattr(obj, key) for key in _RULE_FIELDS}
        values["experiment"] = obj.experiment.name if obj.experiment_id else None
        if change:
            alerts.alert_rule_update(rule=obj, user=request.user, **values)
        else:
            created = alerts.alert_rule_create(
                workspace=obj.workspace, user=request.user, **values
            )
            obj.pk = created.pk

    def delete_model(self, request, obj) -> None:
        alerts.alert_rule_delete(rule=obj, user=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset:
            self.delete_model(request, rule)

    @admin.action(description="Rotate the webhook signing secret")
    def rotate_secret(self, request, queryset) -> None:
        for rule in queryset.filter(channel=AlertChannel.WEBHOOK):
            alerts.alert_rule_rotate_secret(rule=rule, user=request.user)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The delivery log: written by the delivery tasks only."""

    list_display = ["at", "rule", "event", "attempt", "status", "response_code", "next_attempt_at"]
    list_filter = ["status", "rule__channel"]
    search_fields = ["rule__name", "event__run__run_id", "error"]


@admin.register(CustomView)
class CustomViewAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Saved views are their owners' to change (runs/services/views.py checks the owner)."""

    list_display = ["name", "workspace", "owner", "shared", "updated_at"]
    list_filter = ["shared", "workspace"]
    search_fields = ["name", "owner__username"]


@admin.register(ComputeTarget)
class ComputeTargetAdmin(admin.ModelAdmin):
    """Writes go through runs.services.compute, so the admin keeps their rules: names are
    checked, `local` and targets with queued or running runs are not deleted."""

    list_display = ["name", "workspace", "capacity", "description", "updated_at"]
    list_filter = ["workspace"]
    search_fields = ["name", "workspace__name"]

    def get_readonly_fields(self, request, obj=None):
        return ["workspace", "name"] if obj is not None else []

    def save_model(self, request, obj, form, change) -> None:
        if change:
            services.compute_target_update(
                target=obj, capacity=obj.capacity, description=obj.description
            )
        else:
            created = services.compute_target_create(
                workspace=obj.workspace,
                name=obj.name,
                capacity=obj.capacity,
                description=obj.description,
            )
            obj.pk = created.pk

    def delete_model(self, request, obj) -> None:
        try:
            services.compute_target_delete(target=obj)
        except ServiceError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def delete_queryset(self, request, queryset) -> None:
        for target in queryset:
            self.delete_model(request, target)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "queue_name", "hostname", "pid", "last_seen_at", "stopped_at"]
    list_filter = ["queue_name"]
    readonly_fields = [f.name for f in Worker._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # workers register themselves


# --- Users: Django's own admin, except that deleting the last owner of a workspace is refused.


class RunstudioUserAdmin(CascadeMixin, UserAdmin):
    def delete_view(self, request, object_id, extra_context=None):
        # Refused before Django's confirmation page and its "deleted successfully" message.
        obj = self.get_object(request, object_id)
        if obj is not None:
            try:
                services.user_check_deletable(user=obj)
            except ServiceError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
                return redirect("admin:auth_user_change", obj.pk)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj) -> None:
        try:
            services.user_check_deletable(user=obj)
        except ServiceError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for user in queryset:
            self.delete_model(request, user)


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, RunstudioUserAdmin)
