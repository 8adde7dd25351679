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

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class Experiment(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

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
        indexes = [models.Index(fields=["key", "value"], name="tag_key_value")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class RunProperty(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="properties")
    key = models.CharField(max_length=255)
    value = models.TextField()

    class Meta:
        verbose_name_plural = "run properties"
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="unique_run_property")]
        indexes = [models.Index(fields=["key", "value"], name="property_key_value")]

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
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "metric series"
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_run_metric")]
        indexes = [models.Index(fields=["name"], name="series_name")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.name}"


class MetricPoint(models.Model):
    """A scalar point. NULL value means NaN: SQLite cannot store NaN in a REAL column."""

    pk = models.CompositePrimaryKey("series", "seq")
    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, db_index=False)
    seq = models.BigIntegerField()
    step = models.BigIntegerField()
    value = models.FloatField(null=True)
    time = models.FloatField()

    def __str__(self) -> str:
        return f"{self.series_id}#{self.seq}"


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
