from django.contrib import admin, messages

from runs import compute
from runs.errors import ServiceError
from runs.models import (
    AlertChannel,
    AlertDelivery,
    AlertRule,
    ApiToken,
    ComputeTarget,
    CustomView,
    Experiment,
    Membership,
    MetricBatch,
    MetricSeries,
    Run,
    RunFile,
    RunProperty,
    RunTag,
    StatusEvent,
    Worker,
    Workspace,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["workspace", "user", "role"]
    list_filter = ["role"]
    search_fields = ["workspace__name", "user__username"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]
    search_fields = ["user__username", "name", "prefix"]


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "created_at"]
    list_filter = ["workspace"]
    search_fields = ["name"]


class RunTagInline(admin.TabularInline):
    model = RunTag
    extra = 0


class RunPropertyInline(admin.TabularInline):
    model = RunProperty
    extra = 0

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # properties are immutable


class MetricSeriesInline(admin.TabularInline):
    model = MetricSeries
    extra = 0
    fields = ["name", "kind", "count", "last_value", "min_value", "max_value", "last_step"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class StatusEventInline(admin.TabularInline):
    model = StatusEvent
    extra = 0
    readonly_fields = ["from_status", "to_status", "at", "by", "reason"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "display_name", "experiment", "status", "submitter", "created_at"]
    list_filter = ["status", "run_type", "workspace"]
    search_fields = ["run_id", "display_name", "description", "experiment__name"]
    raw_id_fields = ["parent", "experiment", "workspace", "submitter"]
    # Status changes go through runs.services.run_set_status, which records events.
    readonly_fields = ["status", "created_at", "started_at", "ended_at", "heartbeat_at"]
    inlines = [RunTagInline, RunPropertyInline, MetricSeriesInline, StatusEventInline]


@admin.register(MetricSeries)
class MetricSeriesAdmin(admin.ModelAdmin):
    list_display = ["run", "name", "kind", "count", "last_value", "min_value", "max_value"]
    list_filter = ["kind"]
    search_fields = ["name", "run__run_id"]
    raw_id_fields = ["run"]


@admin.register(MetricBatch)
class MetricBatchAdmin(admin.ModelAdmin):
    list_display = ["run", "key", "points", "created_at"]
    raw_id_fields = ["run"]


@admin.register(RunFile)
class RunFileAdmin(admin.ModelAdmin):
    list_display = ["run", "path", "size", "updated_at"]
    search_fields = ["path", "run__run_id"]
    raw_id_fields = ["run"]


@admin.register(StatusEvent)
class StatusEventAdmin(admin.ModelAdmin):
    list_display = ["run", "from_status", "to_status", "at", "by"]
    list_filter = ["to_status"]
    raw_id_fields = ["run", "by"]


# --- Alerts (runs/alerts.py) ------------------------------------------------------------------


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "channel", "statuses", "experiment", "enabled"]
    list_filter = ["channel", "enabled", "workspace"]
    search_fields = ["name", "workspace__name", "recipients", "webhook_url"]
    raw_id_fields = ["experiment", "created_by"]

    def save_model(self, request, obj, form, change):
        from runs.alerts import new_secret

        if obj.channel == AlertChannel.WEBHOOK and not obj.secret:
            obj.secret = new_secret()  # every webhook is signed
        super().save_model(request, obj, form, change)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ["at", "rule", "event", "attempt", "status", "response_code", "next_attempt_at"]
    list_filter = ["status", "rule__channel"]
    search_fields = ["rule__name", "event__run__run_id", "error"]
    raw_id_fields = ["rule", "event"]
    readonly_fields = ["at"]


@admin.register(CustomView)
class CustomViewAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "owner", "shared", "updated_at"]
    list_filter = ["shared", "workspace"]
    search_fields = ["name", "owner__username"]
    raw_id_fields = ["workspace", "owner"]


@admin.register(ComputeTarget)
class ComputeTargetAdmin(admin.ModelAdmin):
    """Writes go through runs.compute's services, so the admin keeps their rules: names are
    checked, `local` and targets with queued or running runs are not deleted."""

    list_display = ["name", "workspace", "capacity", "description", "updated_at"]
    list_filter = ["workspace"]
    search_fields = ["name", "workspace__name"]

    def get_readonly_fields(self, request, obj=None):
        return ["workspace", "name"] if obj is not None else []

    def save_model(self, request, obj, form, change) -> None:
        if change:
            compute.compute_target_update(
                target=obj, capacity=obj.capacity, description=obj.description
            )
        else:
            created = compute.compute_target_create(
                workspace=obj.workspace,
                name=obj.name,
                capacity=obj.capacity,
                description=obj.description,
            )
            obj.pk = created.pk

    def delete_model(self, request, obj) -> None:
        try:
            compute.compute_target_delete(target=obj)
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
