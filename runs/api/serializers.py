"""The REST API's answers, each shape written once (docs/architecture.md, "One declaration per
API shape").

A shape is a DRF serializer: drf-spectacular documents its fields at /api/schema/, and
`Shape.render` builds the answer from the same fields, so what is served cannot drift from what
is documented (tests/conformance.py checks every answer the tests get). Rendering does not go
through DRF's per-field machinery: each shape compiles its fields once into plain getters, since
a run list renders up to 1,000 runs and a metric history 100,000 points.

Request bodies, which the services validate, are documented in runs/api/schemas.py.
"""

from operator import attrgetter, itemgetter
from typing import Any

from rest_framework import serializers

from runs import downsample, limits
from runs.api import schemas as s
from runs.links import portal_url
from runs.models import (
    AlertChannel,
    ApiToken,
    Experiment,
    MetricKind,
    Role,
    Run,
    RunStatus,
)

# A render_<name> method returns this to leave an optional (required=False) field out.
OMIT = object()


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _identity(value, context):
    return value


def _converter(field):
    """How a value read from the object becomes JSON, by the field's type."""
    if isinstance(field, serializers.DateTimeField):
        return lambda value, context: _iso(value)
    if isinstance(field, Shape):
        shape = type(field)
        return lambda value, context: None if value is None else shape.render(value, **context)
    if isinstance(field, serializers.ListSerializer) and isinstance(field.child, Shape):
        shape = type(field.child)
        return lambda values, context: [shape.render(v, **context) for v in values]
    return _identity


def _path_getter(path: str, convert, *, keys: bool):
    """The value at a dotted `source` path (None along the way gives None), converted; `keys`:
    the object is a dict, read by key."""
    if path == "*":
        return lambda obj, context: convert(obj, context)
    first, *rest = path.split(".")
    get = itemgetter(first) if keys else attrgetter(first)
    if not rest:
        if convert is _identity:
            return lambda obj, context: get(obj)
        return lambda obj, context: convert(get(obj), context)
    more = [attrgetter(name) for name in rest]

    def getter(obj, context):
        value = get(obj)
        for step in more:
            if value is None:
                break
            value = step(value)
        return convert(value, context)

    return getter


# One answer's shape (a comment, not a docstring: drf-spectacular would show it in every
# component). A field's value is its `source` path (default: its name), made JSON by the field's
# type (a date-time: ISO 8601 UTC with "Z"; a nested shape: rendered); a static
# `render_<name>(obj, context)` computes it instead, already JSON (OMIT leaves the key out).
# `parent_source` names the attribute a subclass's object holds its parent shape's object in
# (an overview holding its target).
class Shape(serializers.Serializer):
    parent_source: str | None = None

    @classmethod
    def render(cls, obj, **context) -> dict[str, Any]:
        plans = cls.__dict__.get("_plans") or cls._compile()
        answer = {}
        for name, get in plans[type(obj) is dict]:
            value = get(obj, context)
            if value is not OMIT:
                answer[name] = value
        return answer

    @classmethod
    def _compile(cls) -> tuple[list, list]:
        own = set(cls.__dict__.get("_declared_fields", {})) - {
            name for base in cls.__mro__[1:] for name in getattr(base, "_declared_fields", {})
        }
        plans = ([], [])
        for keys in (False, True):
            for name, field in cls._declared_fields.items():
                via = cls.parent_source if cls.parent_source and name not in own else None
                method = getattr(cls, f"render_{name}", None)
                if method is not None:
                    get = method
                else:
                    get = _path_getter(field.source or name, _converter(field), keys=keys)
                if via:
                    get = _via(attrgetter(via), get)
                plans[keys].append((name, get))
        cls._plans = plans
        return plans

    def to_representation(self, instance):
        return type(self).render(instance, **self.context)


def _via(outer, get):
    return lambda obj, context: get(outer(obj), context)


def page_of(item: type[Shape], name: str, *, cursor: bool = True) -> type[Shape]:
    """`{"results": [item…], "next_cursor"}` (a keyset page; without `cursor`, one list)."""
    fields = {"results": item(many=True)}
    if cursor:
        fields["next_cursor"] = serializers.CharField(
            allow_null=True, help_text="Pass as `cursor` for the next page; null on the last page."
        )
    return type(name, (Shape,), fields)


# ---------------------------------------------------------------------------------------------
# tokens, the signed-in user, workspaces and members


class TokenSerializer(Shape):
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to tell tokens apart.")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The key, shown this once: `Token <key>`.")

    @staticmethod
    def render_token(token: ApiToken, context) -> str:
        return context["key"]


TokenListSerializer = page_of(TokenSerializer, "TokenListSerializer", cursor=False)


# Rendered from the membership.
class WorkspaceSerializer(Shape):
    """A workspace as its member sees it: with the member's role."""

    name = serializers.CharField(source="workspace.name")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField(source="workspace.created_at")


WorkspaceListSerializer = page_of(WorkspaceSerializer, "WorkspaceListSerializer")


class MeSerializer(Shape):
    username = serializers.CharField()
    workspaces = WorkspaceSerializer(many=True)


class MemberSerializer(Shape):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Role.choices)


MemberListSerializer = page_of(MemberSerializer, "MemberListSerializer", cursor=False)


# Rendered from services.membership_invite's InvitationKey.
class InvitationSerializer(Shape):
    """What an owner gets for someone they share no workspace with (whether or not the
    account exists): a key to pass on, shown this once."""

    username = serializers.CharField(source="invitation.username")
    role = serializers.ChoiceField(source="invitation.role", choices=Role.choices)
    workspace = serializers.CharField(source="invitation.workspace.name")
    invitation = serializers.CharField(
        source="key", help_text="The key; the invitee sends it to accept."
    )
    expires_at = serializers.DateTimeField(source="invitation.expires_at")


# ---------------------------------------------------------------------------------------------
# experiments and runs


class ExperimentSerializer(Shape):
    name = serializers.CharField()
    workspace = serializers.CharField(source="workspace.name")
    created_at = serializers.DateTimeField()
    run_count = serializers.IntegerField(allow_null=True)
    last_run_at = serializers.DateTimeField(allow_null=True)

    # Annotations of selectors.experiment_list; a bare experiment has neither.
    @staticmethod
    def render_run_count(experiment: Experiment, context) -> int | None:
        return getattr(experiment, "run_count", None)

    @staticmethod
    def render_last_run_at(experiment: Experiment, context) -> str | None:
        return _iso(getattr(experiment, "last_run_at", None))


ExperimentListSerializer = page_of(ExperimentSerializer, "ExperimentListSerializer")


# Tags and properties come prefetched (selectors.with_run_details) or are loaded here;
# `request` in the context makes the portal URL absolute.
class RunSerializer(Shape):
    """Run details (docs/architecture.md, "Run details")."""

    run_id = serializers.CharField()
    workspace = serializers.CharField(source="workspace.name")
    experiment = serializers.CharField(source="experiment.name")
    parent_id = serializers.CharField(source="parent.run_id", allow_null=True)
    display_name = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=RunStatus.choices)
    run_type = serializers.CharField()
    submitter = serializers.CharField(source="submitter.username", allow_null=True)
    compute_target = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    error = s.RunErrorSerializer(allow_null=True)
    tags = s.TagsField(child=serializers.CharField(allow_null=True))
    properties = s.PropertiesField(child=serializers.CharField())
    portal_url = serializers.URLField(help_text="The run's page in the studio.")

    @staticmethod
    def render_error(run: Run, context) -> dict | None:
        if run.error_code or run.error_message:
            return {"code": run.error_code, "message": run.error_message}
        return None

    @staticmethod
    def render_tags(run: Run, context) -> dict:
        return {t.key: t.value for t in sorted(run.tags.all(), key=lambda t: t.pk)}

    @staticmethod
    def render_properties(run: Run, context) -> dict:
        return {p.key: p.value for p in sorted(run.properties.all(), key=lambda p: p.pk)}

    @staticmethod
    def render_portal_url(run: Run, context) -> str:
        return portal_url(run, context.get("request"))


class RunPageSerializer(page_of(RunSerializer, "RunPageBaseSerializer")):
    # The pager's total (runs/selectors/run_pages.py run_count): counting every match would
    # read them all on a million runs, so past LIST_TOTAL_MAX it is a bound.
    count = serializers.IntegerField(
        help_text=f"How many runs match: exact up to {limits.LIST_TOTAL_MAX:,} "
        f"(LIST_TOTAL_MAX); past it {limits.LIST_TOTAL_MAX + 1:,} meaning at least that many "
        "(`gte`)."
    )
    count_is_estimate = serializers.BooleanField(
        help_text="True when `count` is not an exact count (`count_relation` is not `eq`)."
    )
    count_relation = serializers.ChoiceField(
        ["eq", "about", "gte"],
        help_text="`eq`: exact; `gte`: at least `count`; `about` (an estimate) is not "
        "answered any more.",
    )


RunListSerializer = page_of(RunSerializer, "RunListSerializer", cursor=False)


class HeartbeatSerializer(Shape):
    status = serializers.ChoiceField(choices=RunStatus.choices)
    heartbeat_at = serializers.DateTimeField()


class TagsSerializer(Shape):
    tags = s.TagsField(child=serializers.CharField(allow_null=True))


class PropertiesSerializer(Shape):
    properties = s.PropertiesField(child=serializers.CharField())


class RunManageResultSerializer(Shape):
    action = serializers.CharField()
    runs = serializers.ListField(child=serializers.CharField())
    affected = serializers.IntegerField(help_text="Runs changed, descendants included.")
    skipped = serializers.ListField(
        child=serializers.CharField(),
        help_text="Named runs with nothing to do (already archived, finished…).",
    )


# ---------------------------------------------------------------------------------------------
# metrics (rendered from the selectors' dicts)


class MetricBatchResultSerializer(Shape):
    accepted = serializers.IntegerField(help_text="Points in the batch.")
    duplicate = serializers.BooleanField(help_text="The key was seen: nothing was written.")


class MetricSummarySerializer(Shape):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=MetricKind.choices)
    count = serializers.IntegerField()
    last = s.MetricNumberField(allow_null=True)
    min = s.MetricNumberField(allow_null=True)
    max = s.MetricNumberField(allow_null=True)
    last_step = serializers.IntegerField(allow_null=True)


class MetricSummaryListSerializer(Shape):
    metrics = MetricSummarySerializer(many=True)


class MetricValuesSerializer(Shape):
    metrics = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Metric name → its values in logged order (a list; a row metric: an object "
        "of columns), the SDK's `get_metrics()` shape.",
    )


class MetricHistoryPointsSerializer(Shape):
    seq = serializers.ListField(child=serializers.IntegerField())
    step = serializers.ListField(child=serializers.IntegerField())
    value = serializers.ListField(child=serializers.JSONField())
    time = serializers.ListField(child=serializers.FloatField())


class MetricHistorySerializer(Shape):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=MetricKind.choices)
    points = MetricHistoryPointsSerializer()
    next_after_seq = serializers.IntegerField(
        allow_null=True, help_text="Pass as `after_seq` for the next page; null on the last."
    )


class SeriesPointsSerializer(Shape):
    x = serializers.ListField(child=serializers.FloatField())
    y = serializers.ListField(
        child=serializers.FloatField(allow_null=True), help_text="null: a gap (NaN)."
    )


class SeriesNanSerializer(Shape):
    x = serializers.ListField(child=serializers.FloatField())
    count = serializers.ListField(child=serializers.IntegerField())


class MetricSeriesSerializer(Shape):
    run_id = serializers.CharField()
    name = serializers.CharField()
    x = serializers.ChoiceField(choices=[(x, x) for x in downsample.X_AXES])
    count = serializers.IntegerField(help_text="Points in the whole series.")
    in_range = serializers.IntegerField(help_text="Points in the requested range.")
    downsampled = serializers.BooleanField()
    buckets = serializers.IntegerField(help_text="0 when the points come back raw.")
    t0 = serializers.FloatField(allow_null=True, help_text="The series' first point's time.")
    x_range = serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        allow_null=True,
        min_length=2,
        max_length=2,
        help_text="[x_min, x_max] as asked; null for a side not given.",
    )
    points = SeriesPointsSerializer()
    nan = SeriesNanSerializer()


# ---------------------------------------------------------------------------------------------
# files


class RunFileSerializer(Shape):
    path = serializers.CharField()
    size = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class RunFileListSerializer(Shape):
    files = RunFileSerializer(many=True)


class RunFileWrittenSerializer(Shape):
    path = serializers.CharField()
    size = serializers.IntegerField(help_text="The file's size after the write.")


# ---------------------------------------------------------------------------------------------
# compute targets and their workers


class WorkerSerializer(Shape):
    worker_id = serializers.CharField()
    queue_name = serializers.CharField()
    hostname = serializers.CharField(allow_blank=True)
    pid = serializers.IntegerField(allow_null=True, help_text="null: not known yet.")
    alive = serializers.BooleanField()
    isolated = serializers.BooleanField(
        help_text="Whether it runs scripts in the sandbox; false: scripts run unisolated."
    )
    started_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    current_run = serializers.CharField(
        allow_null=True, help_text="The id of the run it executes, if it is this workspace's."
    )
    busy_elsewhere = serializers.BooleanField(
        help_text="A shared `local` worker executing another workspace's run (never named)."
    )

    @staticmethod
    def render_alive(worker, context) -> bool:
        from runs.selectors.compute import worker_is_alive

        return worker_is_alive(worker)

    # Only a run of the workspace being shown (compute_target_overview sets run_here): a
    # shared local worker busy with another workspace's run says only that it is busy.
    @staticmethod
    def render_current_run(worker, context) -> str | None:
        run_here = getattr(worker, "run_here", None)
        return run_here.run_id if run_here else None

    @staticmethod
    def render_busy_elsewhere(worker, context) -> bool:
        return getattr(worker, "busy_elsewhere", False)


class ComputeTargetSerializer(Shape):
    name = serializers.CharField()
    capacity = serializers.IntegerField()
    description = serializers.CharField(allow_blank=True)
    queue_name = serializers.CharField(
        help_text="Its django.tasks queue: `local`, or `t<id>`, this workspace's target's own."
    )
    worker_key_prefix = serializers.CharField(
        allow_null=True, help_text="The start of its worker key; null until an owner makes one."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @staticmethod
    def render_queue_name(target, context) -> str:
        from runs.selectors.compute import target_queue_name

        return target_queue_name(target)

    @staticmethod
    def render_worker_key_prefix(target, context) -> str | None:
        return target.worker_key_prefix or None


# Rendered from selectors.compute_target_overview's TargetOverview.
class ComputeTargetOverviewSerializer(ComputeTargetSerializer):
    parent_source = "target"

    active_runs = serializers.IntegerField()
    queued_runs = serializers.IntegerField()
    isolated = serializers.BooleanField(
        allow_null=True,
        help_text="true: every alive worker sandboxes scripts; false: NOT ISOLATED, an alive "
        "worker runs scripts without the sandbox; null: no worker is alive.",
    )
    workers = WorkerSerializer(many=True)

    @staticmethod
    def render_active_runs(overview, context) -> int:
        return len(overview.active_runs)

    @staticmethod
    def render_queued_runs(overview, context) -> int:
        return len(overview.queued_runs)


class ComputeTargetWorkerKeySerializer(ComputeTargetSerializer):
    worker_key = serializers.CharField(help_text="Shown once; only its SHA-256 is stored.")
    worker_command = serializers.CharField(help_text="The command that starts a worker with it.")

    @staticmethod
    def render_worker_key(target, context) -> str:
        return context["key"]

    @staticmethod
    def render_worker_command(target, context) -> str:
        return context["command"]


ComputeTargetListSerializer = page_of(
    ComputeTargetOverviewSerializer, "ComputeTargetListSerializer", cursor=False
)


# ---------------------------------------------------------------------------------------------
# alert rules


# `owner` in the context: whether the caller may see the webhook's secret.
class AlertRuleSerializer(Shape):
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()
    statuses = serializers.ListField(child=serializers.ChoiceField(choices=RunStatus.choices))
    experiment = serializers.CharField(
        source="experiment.name", allow_null=True, help_text="null: any experiment."
    )
    channel = serializers.ChoiceField(choices=AlertChannel.choices)
    recipients = serializers.ListField(source="recipient_list", child=serializers.EmailField())
    webhook_url = serializers.URLField(allow_null=True)
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    secret = serializers.CharField(
        required=False, help_text="The webhook signing secret; only owners get it."
    )

    @staticmethod
    def render_webhook_url(rule, context) -> str | None:
        return rule.webhook_url or None

    @staticmethod
    def render_secret(rule, context):
        return rule.secret if context["owner"] and rule.secret else OMIT


AlertRuleListSerializer = page_of(AlertRuleSerializer, "AlertRuleListSerializer", cursor=False)
