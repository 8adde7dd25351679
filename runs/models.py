from django.conf import settings
from django.db import models
from django.urls import reverse


class Role(models.TextChoices):
    READER = "reader", "Reader"
    CONTRIBUTOR = "contributor", "Contributor"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.READER: 1, Role.CONTRIBUTOR: 2, Role.OWNER: 3}


class Workspace(models.Model):
    name = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="workspaces"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="unique_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.workspace}"

    def allows(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class Invitation(models.Model):
    """An owner's offer of a role in a workspace to whoever signs in as `username`. It is how
    an owner adds someone they share no workspace with: the answer is the same whether that
    account exists or not (no username oracle). Single use; only the key's hash is stored."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    username = models.CharField(max_length=150)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitations_sent"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.username} invited to {self.workspace} as {self.role}"


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A run-scoped token (the one a worker hands a submitted script) reaches only this run and
    # its descendants; null for a user's ordinary token.
    run = models.ForeignKey(
        "Run", on_delete=models.CASCADE, null=True, blank=True, related_name="scoped_tokens"
    )

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class Experiment(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    # MLflow's experiment tags and soft delete (the MLflow door, runs/mlflow/): key → value.
    tags = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="unique_experiment_name")
        ]

    def __str__(self) -> str:
        return f"{self.workspace}/{self.name}"


class RunStatus(models.TextChoices):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCEL_REQUESTED = "CancelRequested"
    CANCELED = "Canceled"


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})


class Run(models.Model):
    run_id = models.CharField(max_length=255, unique=True)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="runs")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    display_name = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.NOT_STARTED
    )
    run_type = models.CharField(max_length=32, default="interactive")
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="submitted_runs",
    )
    compute_target = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    # Archived (MLflow's soft delete; run_management.run_bulk_apply): hidden, restorable.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "-created_at"], name="run_ws_created"),
            models.Index(fields=["experiment", "-created_at"], name="run_exp_created"),
            models.Index(fields=["workspace", "status"], name="run_ws_status"),
        ]

    def __str__(self) -> str:
        return self.run_id

    def get_absolute_url(self) -> str:
        return reverse("api:run-detail", kwargs={"run_id": self.run_id})

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class RunTag(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tags")
    key = models.CharField(max_length=255)
    value = models.TextField(null=True, blank=True)  # noqa: DJ001  (None is a bare tag)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="unique_run_tag")]
        # With the run: a tag filter's run ids come from the index alone, and the run list
        # sorted by a tag walks it in order (runs/selectors/run_pages.py).
        indexes = [models.Index(fields=["key", "value", "run"], name="tag_key_value_run")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class RunProperty(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="properties")
    key = models.CharField(max_length=255)
    value = models.TextField()

    class Meta:
        verbose_name_plural = "run properties"
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="unique_run_property")]
        indexes = [models.Index(fields=["key", "value", "run"], name="property_key_value_run")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class MetricKind(models.TextChoices):
    SCALAR = "scalar"
    STRING = "string"
    LIST = "list"
    ROW = "row"
    IMAGE = "image"


class MetricSeries(models.Model):
    """One named series of a run, with the summary the run lists read instead of points."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_series")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=MetricKind.choices)
    count = models.BigIntegerField(default=0)
    last_value = models.FloatField(null=True, blank=True)
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True)
    last_step = models.BigIntegerField(null=True, blank=True)
    # The chart pyramid (MetricSummary) needs these: a window by step or time maps to one seq
    # range only while that column never goes down. None = a series from before the pyramid,
    # not summarized yet (`manage.py metrics_summarize`); charts then scan its points.
    last_time = models.FloatField(null=True, blank=True)
    steps_sorted = models.BooleanField(null=True, blank=True)
    times_sorted = models.BooleanField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "metric series"
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_run_metric")]
        indexes = [
            # Covers the run list's sort and filter on a metric's last/min/max: the lookup by
            # (run, name) reads the summary from the index alone (measured on 100k runs,
            # SQLite: a tag-filtered page sorted by a metric max 53 → 18 ms).
            models.Index(
                fields=["run", "name", "last_value", "min_value", "max_value"],
                name="series_run_summary",
            ),
            # The run list sorted by a metric's last/min/max walks one of these in order
            # (runs/selectors/run_pages.py): a first page reads a few hundred entries, not
            # every run's summary. They also serve lookups by name alone (the old
            # series_name index).
            models.Index(fields=["name", "last_value", "run"], name="series_name_last"),
            models.Index(fields=["name", "min_value", "run"], name="series_name_min"),
            models.Index(fields=["name", "max_value", "run"], name="series_name_max"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.name}"


class MetricPoint(models.Model):
    """A scalar point. NULL value means NaN: SQLite cannot store NaN in a REAL column."""

    pk = models.CompositePrimaryKey("series", "seq")
    # No database constraint: SQLite would check the series for every inserted point (~8% of
    # the ingest floor). Points are only written by run_log_batch for series it has just
    # locked or created, and the ORM still cascades deletes.
    series = models.ForeignKey(
        MetricSeries, on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    seq = models.BigIntegerField()
    step = models.BigIntegerField()
    value = models.FloatField(null=True)
    time = models.FloatField()

    def __str__(self) -> str:
        return f"{self.series_id}#{self.seq}"


class PointArrayField(models.Field):
    """A PostgreSQL array of `element` (int8 or float8); PointBlock's columns. The ORM never
    reads or writes it (runs/points.py does, in SQL); on other databases the column exists, as
    a BLOB, and stays empty."""

    def __init__(self, *args, element: str = "float8", **kwargs):
        self.element = element
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["element"] = self.element
        return name, path, args, kwargs

    def db_type(self, connection):
        return f"{self.element}[]" if connection.vendor == "postgresql" else "blob"


class PointBlock(models.Model):
    """On PostgreSQL, a scalar series' points are stored in blocks of `points.BLOCK` (64)
    consecutive seqs: block k holds seqs [64k, 64k + 63] as three arrays, in seq order, and only
    a series' last block holds fewer than 64. A row a point costs PostgreSQL ~16× the CPU to
    store (a heap tuple and an index entry each); 64 points stay under the size at which a row
    is compressed (TOAST). NaN is a NULL element, as NULL is a NaN point elsewhere. SQLite keeps
    MetricPoint rows (runs/points.py reads either)."""

    pk = models.CompositePrimaryKey("series", "block")
    # No database constraint, like MetricPoint.
    series = models.ForeignKey(
        MetricSeries, on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    block = models.BigIntegerField()
    steps = PointArrayField(element="int8")
    vals = PointArrayField(element="float8")
    times = PointArrayField(element="float8")

    def __str__(self) -> str:
        return f"{self.series_id}@{self.block}"


class MetricSummary(models.Model):
    """One block of a scalar series' min/max pyramid (runs/summary.py): the points whose seq lies
    in [bucket × width, (bucket + 1) × width), width = SUMMARY_BASE × SUMMARY_FANOUT^(level-1).
    Charts aggregate these instead of points, so a draw reads O(buckets) rows."""

    pk = models.CompositePrimaryKey("series", "level", "bucket")
    # No database constraint, like MetricPoint: run_log_batch is the only writer.
    series = models.ForeignKey(
        MetricSeries, on_delete=models.CASCADE, db_index=False, db_constraint=False
    )
    level = models.SmallIntegerField()
    bucket = models.BigIntegerField()
    count = models.IntegerField()
    non_nan = models.IntegerField()  # points whose value is finite (not NaN, not ±inf)
    min_value = models.FloatField(null=True)  # over the finite values; NULL if none
    max_value = models.FloatField(null=True)

    def __str__(self) -> str:
        return f"{self.series_id}@{self.level}#{self.bucket}"


class MetricEntry(models.Model):
    """A non-scalar value: a string, a list, a table row or an image's run-file path."""

    pk = models.CompositePrimaryKey("series", "seq")
    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, db_index=False)
    seq = models.BigIntegerField()
    step = models.BigIntegerField()
    value = models.JSONField()
    time = models.FloatField()

    class Meta:
        verbose_name_plural = "metric entries"

    def __str__(self) -> str:
        return f"{self.series_id}#{self.seq}"


class MetricBatch(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_batches")
    key = models.CharField(max_length=100)
    points = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "metric batches"
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="unique_metric_batch")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.key}"


class RunFile(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="unique_run_file")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.path}"


class RunFilePart(models.Model):
    """On object storage, an appended run file is its head object (the run tree's own key, when
    the file began as a whole write) followed by these parts, each one object holding bytes
    `start`..`start + size` of the file: an append is one new object and one row, never a
    rewrite. Compaction joins them into one (docs/architecture.md, "Run files on S3")."""

    file = models.ForeignKey(RunFile, on_delete=models.CASCADE, related_name="parts")
    start = models.BigIntegerField()
    size = models.BigIntegerField()
    key = models.CharField(max_length=255)  # the part's storage name, `.appends/<run id>/…`

    class Meta:
        ordering = ["file", "start"]
        constraints = [
            models.UniqueConstraint(fields=["file", "start"], name="unique_run_file_part")
        ]

    def __str__(self) -> str:
        return f"{self.file_id}@{self.start}+{self.size}"


class StatusEvent(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="status_events")
    from_status = models.CharField(max_length=16, choices=RunStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=RunStatus.choices)
    at = models.DateTimeField(auto_now_add=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.from_status or '∅'} → {self.to_status}"


class CustomView(models.Model):
    """A saved run-list setup (filters, search, columns, sort, selected runs, charts).

    Private to its owner or shared with the workspace; only the owner changes it
    (runs/services/saved_views.py). `params` is validated there before it is stored."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="views")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="run_views"
    )
    name = models.CharField(max_length=100)
    shared = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["workspace", "owner"], name="view_ws_owner")]

    def __str__(self) -> str:
        return f"{self.workspace}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("runs:view", kwargs={"workspace": self.workspace.name, "view_id": self.pk})


class ComputeTarget(models.Model):
    """A named place that runs submitted scripts; its name is the django.tasks queue name.

    Queue names are global, so every workspace's `cpu-cluster` shares the `cpu-cluster` queue
    and its workers; `capacity` bounds how many of *this workspace's* runs on the target
    execute at once (runs/tasks.py re-queues a run that would exceed it)."""

    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="compute_targets"
    )
    name = models.CharField(max_length=64)
    capacity = models.PositiveIntegerField(default=1)
    description = models.CharField(max_length=255, blank=True)
    # The worker key (SHA-256 of it, and its first characters to recognise it): a worker started
    # with it serves this target's queue and no other. Empty until an owner makes one.
    worker_key_hash = models.CharField(max_length=64, blank=True)
    worker_key_prefix = models.CharField(max_length=12, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="unique_compute_target"),
            models.CheckConstraint(
                condition=models.Q(capacity__gte=1), name="compute_target_capacity_gte_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workspace}/{self.name}"


class Worker(models.Model):
    """A worker process serving one queue (= compute target name), seen alive by heartbeats.

    `worker_id` is the django-tasks-db worker id (`<hostname>-<pid>-<4 hex>` for workers
    started by `runstudio worker`; whatever `db_worker` generated otherwise). Alive means
    `stopped_at` is null and `last_seen_at` is newer than RUNSTUDIO_HEARTBEAT_TIMEOUT."""

    worker_id = models.CharField(max_length=64, unique=True)
    queue_name = models.CharField(max_length=64, db_index=True)
    # The workspace whose target the worker serves; null for the server's own `local` workers,
    # which serve every workspace's `local` target.
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, null=True, blank=True, related_name="workers"
    )
    # Whether the worker runs scripts in the sandbox (runs/sandbox.py); shown on the compute page.
    isolated = models.BooleanField(default=False)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    current_run = models.ForeignKey(
        Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    runs_executed = models.IntegerField(default=0)

    class Meta:
        ordering = ["queue_name", "-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.queue_name})"


class AlertChannel(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class AlertRule(models.Model):
    """Turns a workspace's status events into notifications (runs/services/alerts.py).

    `statuses` is the list of target statuses that fire the rule; `experiment`, when set,
    narrows it to that experiment's runs. E-mail rules send to `recipients` (one address a
    line); webhook rules POST JSON to `webhook_url`, signed with `secret` (HMAC-SHA256)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100)
    statuses = models.JSONField(default=list)
    experiment = models.ForeignKey(
        Experiment, on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules"
    )
    channel = models.CharField(max_length=16, choices=AlertChannel.choices)
    recipients = models.TextField(blank=True)
    webhook_url = models.URLField(max_length=2000, blank=True)
    secret = models.CharField(max_length=100, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["workspace", "enabled"], name="alert_rule_ws_enabled")]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="unique_alert_rule_name")
        ]

    def __str__(self) -> str:
        return f"{self.workspace}/{self.name}"

    @property
    def recipient_list(self) -> list[str]:
        return [line.strip() for line in self.recipients.splitlines() if line.strip()]


class AlertDeliveryStatus(models.TextChoices):
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class AlertDelivery(models.Model):
    """One attempt to deliver one status event through one rule. A failed webhook attempt
    schedules the next (`next_attempt_at`); the row is created before sending, so a task
    that runs twice does not send twice."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(StatusEvent, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=16, choices=AlertDeliveryStatus.choices, default=AlertDeliveryStatus.SENDING
    )
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "alert deliveries"
        ordering = ["-at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "event", "attempt"], name="unique_alert_delivery_attempt"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} #{self.event_id} attempt {self.attempt}: {self.status}"


class LoggedModelStatus(models.TextChoices):
    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"


class LoggedModel(models.Model):
    """An MLflow 3 logged model (`mlflow.<flavor>.log_model`). Its files live in its source
    run's tree, under `outputs/models/<model_id>/`, so the studio's Outputs show them."""

    model_id = models.CharField(max_length=64, unique=True)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="models")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="models")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logged_models")
    name = models.CharField(max_length=255)
    model_type = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=8, choices=LoggedModelStatus.choices, default=LoggedModelStatus.PENDING
    )
    status_message = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.model_id})"


class RunInputKind(models.TextChoices):
    DATASET = "dataset", "Dataset"
    MODEL_INPUT = "model_input", "Model used"
    MODEL_OUTPUT = "model_output", "Model produced"


class RunInput(models.Model):
    """What a run read or produced, from MLflow's log-inputs / log-outputs (MLflow keeps the
    same in its datasets, inputs and input_tags tables): a dataset with its input tags (e.g.
    `mlflow.data.context: train`), or a logged model used or produced, with its step. Logged
    once: the same dataset (name, digest) or model again is a no-op, as in MLflow."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="inputs")
    kind = models.CharField(max_length=16, choices=RunInputKind.choices)
    name = models.CharField(max_length=500)  # the dataset's name, or the logged model's id
    digest = models.CharField(max_length=36, blank=True)
    source_type = models.CharField(max_length=36, blank=True)
    source = models.TextField(blank=True)
    schema = models.TextField(blank=True)
    profile = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    step = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "kind", "name", "digest"], name="unique_run_input"
            )
        ]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.kind} {self.name}"


class RunAction(models.TextChoices):
    ARCHIVE = "archive", "Archived"
    RESTORE = "restore", "Restored"
    DELETE = "delete", "Deleted for good"
    TAG = "tag", "Tagged"
    UNTAG = "untag", "Untagged"
    CANCEL = "cancel", "Canceled"


class RunActivity(models.Model):
    """Who archived, restored, deleted, (un)tagged or canceled which run, from the studio's run
    management (runs/services/run_management.py). Keyed by the run's public id, not a foreign
    key, so the record of a deletion outlives the run."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="run_activity")
    run_id = models.CharField(max_length=255)
    action = models.CharField(max_length=16, choices=RunAction.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["workspace", "-at"], name="activity_ws_at"),
            models.Index(fields=["run_id", "-at"], name="activity_run_at"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.action}"
