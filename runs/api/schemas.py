"""OpenAPI documentation of the REST API's requests: bodies, parameters, the error component,
and the field types that state the real limits (drf-spectacular, `@extend_schema` in views/).

Documentation only: the services validate a request (schemathesis checks that the two agree,
tests/security/test_schemathesis.py). Answers are not here: runs/api/serializers.py declares
each once, and that declaration both renders and documents it.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from runs import limits
from runs.models import AlertChannel, MetricKind, Role, RunStatus

# ---------------------------------------------------------------------------------------------
# errors: one component for every error answer


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. `invalid`, `not_found`.")
    message = serializers.CharField(help_text="Human-readable; says what to do.")
    field = serializers.CharField(
        required=False, help_text="The offending input, e.g. `metrics[3].name`, when one is."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "Invalid input (body or query); `field` names the offending input.",
    401: "No credentials, or an unknown or revoked token.",
    403: "The caller's role in the workspace does not allow this.",
    404: "Not found, or in a workspace the caller is not a member of (no existence leak).",
    409: "Conflicts with the current state.",
    411: "No Content-Length, and the server could not decode a chunked body: nothing stored.",
    413: "The body is over the limit.",
    503: "The run-file storage (the bucket) refused or did not answer; retry later.",
}


def errors(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Error responses for `responses=` beyond the usual ones runs/api/schema.py AutoSchema
    adds to every operation (400, 401, 403, 404 where they apply): `e409="…"` documents a 409
    with that text, a bare code with the default text."""
    codes = {*codes, *(int(key[1:]) for key in descriptions)}
    return {
        code: OpenApiResponse(
            ErrorSerializer, description=descriptions.get(f"e{code}", ERROR_DESCRIPTIONS[code])
        )
        for code in sorted(codes)
    }


# ---------------------------------------------------------------------------------------------
# shared field types


@extend_schema_field(
    {
        "oneOf": [
            {"type": "number", "format": "double"},
            {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
        ]
    }
)
class MetricNumberField(serializers.FloatField):
    """A float; non-finite values travel as the strings "NaN", "Infinity", "-Infinity"."""


# The rules of runs/validation.py as JSON Schema, so that /api/schema/ states the real limits
# (schemathesis checks both ways: what the schema allows is accepted, what it forbids refused).
# A name (metric, tag or property key): check_name.
NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": limits.NAME_MAX_LENGTH,
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
    "description": "1–255 characters, no control characters.",
}
# Free text (a description, a tag or property value): check_text refuses only NUL.
TEXT_PATTERN = "^[^\\u0000]*$"
# One line (a display name, a rule's name): check_line refuses every control character.
LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
# A rule's name is one line that is not blank once stripped (runs/services/alerts.py).
RULE_NAME_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\S[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _map_schema(value: dict, *, nullable_values: bool) -> dict:
    """A key → value object as _check_kv takes it: at most TAGS_PER_REQUEST keys, each a name
    (`propertyNames`, which OpenAPI 3.0 tools that know JSON Schema honour); a value is text, or
    a number or boolean stored as its text. Objects and lists are refused. (OpenAPI 3.1 for
    `propertyNames`: 3.0's JSON Schema dialect has no way to say what a key may be.)"""
    values = [value, {"type": "number"}, {"type": "boolean"}]
    if nullable_values:
        values.append({"type": "null"})
    return {
        "type": "object",
        "maxProperties": limits.TAGS_PER_REQUEST,
        "propertyNames": NAME_SCHEMA,
        "additionalProperties": {"oneOf": values},
    }


@extend_schema_field(
    _map_schema(
        {"type": "string", "maxLength": limits.TAG_VALUE_MAX_LENGTH, "pattern": TEXT_PATTERN},
        nullable_values=True,
    )
)
class TagsField(serializers.DictField):
    """Tag key → value; null is a bare tag."""


@extend_schema_field(
    _map_schema(
        {"type": "string", "maxLength": limits.PROPERTY_VALUE_MAX_LENGTH, "pattern": TEXT_PATTERN},
        nullable_values=False,
    )
)
class PropertiesField(serializers.DictField):
    """Property key → value."""


@extend_schema_field(NAME_SCHEMA)
class NameField(serializers.CharField):
    """A metric, tag or property name."""


def string_field(*, max_length: int, pattern: str, **kwargs) -> serializers.CharField:
    """A string with the server's length limit and pattern; `allow_null` makes it nullable."""
    schema = {"type": "string", "maxLength": max_length, "pattern": pattern}
    field = extend_schema_field(schema)(type("StringField", (serializers.CharField,), {}))
    return field(**kwargs)


def _tags_field(**kwargs) -> serializers.DictField:
    return TagsField(child=serializers.CharField(allow_null=True), **kwargs)


def _properties_field(**kwargs) -> serializers.DictField:
    return PropertiesField(child=serializers.CharField(), **kwargs)


# A day for the run list's created_from/created_to: YYYY-MM-DD within DATE_MIN..DATE_MAX
# (runs/filters.py), or empty for no bound, as the studio's filter form sends it.
DAY = {
    "anyOf": [
        {
            "type": "string",
            "format": "date",
            "pattern": "^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-",
        },
        {"type": "string", "maxLength": 0},
    ]
}


# A run file's path as storage.check_path takes it: '/'-separated names, none empty, '.' or
# '..', without control characters or backslashes, at most FILE_PATH_MAX_LENGTH characters.
# A name may have 255 UTF-8 bytes; the schema says 63 characters, which always fit in them.
_PATH_CHAR = "[^\\u0000-\\u001f\\u007f\\\\/]"
_PATH_NAME = (
    f"(?:[^\\u0000-\\u001f\\u007f\\\\/.]{_PATH_CHAR}{{0,62}}"
    f"|\\.[^\\u0000-\\u001f\\u007f\\\\/.]{_PATH_CHAR}{{0,61}}"
    f"|\\.\\.{_PATH_CHAR}{{1,61}})"
)
FILE_PATH_PARAMETER = OpenApiParameter(
    "path",
    {
        "type": "string",
        "maxLength": limits.FILE_PATH_MAX_LENGTH,
        "pattern": f"^{_PATH_NAME}(?:/{_PATH_NAME})*$",
    },
    OpenApiParameter.PATH,
    description="A path inside the run's tree, e.g. `logs/out.txt`.",
)


def int_parameter(name: str, *, minimum: int, maximum: int | None = None, **kwargs):
    """A whole-number query parameter with the bounds common._int_param enforces."""
    schema = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return OpenApiParameter(name, schema, **kwargs)


PAGE_PARAMETERS = [
    int_parameter(
        "limit",
        minimum=1,
        maximum=limits.PAGE_SIZE_MAX,
        default=limits.PAGE_SIZE_DEFAULT,
        description=f"Items per page, 1–{limits.PAGE_SIZE_MAX}.",
    ),
    OpenApiParameter(
        "cursor",
        {"type": "string", "pattern": "^[0-9]{0,18}$"},
        description="`next_cursor` of the previous page.",
    ),
]


# ---------------------------------------------------------------------------------------------
# tokens and the signed-in user


class TokenCreateRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField()
    name = serializers.CharField(required=False, help_text="A label for the token.")


# ---------------------------------------------------------------------------------------------
# workspaces and members


class WorkspaceCreateRequestSerializer(serializers.Serializer):
    name = serializers.RegexField(limits.WORKSPACE_NAME_RE.pattern)


class MemberSetRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, required=False, default=Role.READER)


class InvitationAcceptRequestSerializer(serializers.Serializer):
    invitation = serializers.CharField()


# ---------------------------------------------------------------------------------------------
# experiments and runs


class ExperimentCreateRequestSerializer(serializers.Serializer):
    name = serializers.RegexField(limits.EXPERIMENT_NAME_RE.pattern)


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


@extend_schema_field(
    {"type": "number", "minimum": limits.CLIENT_TIME_MIN, "maximum": limits.CLIENT_TIME_MAX}
)
class ClientTimeField(serializers.FloatField):
    """A time the client saw, in unix seconds (runs.services.check_client_time)."""


class RunSpecSerializer(serializers.Serializer):
    """A run to create; every field is optional (null: the same as absent)."""

    run_id = serializers.RegexField(
        limits.CHOSEN_RUN_ID_RE.pattern,
        required=False,
        allow_null=True,
        help_text="Chosen by the server when omitted. A chosen id is stored as "
        "`<workspace>~<id>` (the prefix may be given too); it is unique in its workspace.",
    )
    display_name = string_field(
        max_length=limits.DISPLAY_NAME_MAX_LENGTH,
        pattern=LINE_PATTERN,
        required=False,
        allow_null=True,
    )
    description = string_field(
        max_length=limits.DESCRIPTION_MAX_LENGTH,
        pattern=TEXT_PATTERN,
        required=False,
        allow_null=True,
    )
    run_type = string_field(
        max_length=32,
        pattern=TEXT_PATTERN,
        required=False,
        allow_null=True,
    )
    status = serializers.ChoiceField(
        choices=[
            RunStatus.NOT_STARTED,
            RunStatus.QUEUED,
            RunStatus.PREPARING,
            RunStatus.RUNNING,
            RunStatus.FINALIZING,
        ],
        required=False,
        allow_null=True,
        help_text="Not a terminal status nor CancelRequested. Default: Running for a run, "
        "NotStarted for a child.",
    )
    compute_target = string_field(
        max_length=64,
        pattern=TEXT_PATTERN,
        required=False,
        allow_null=True,
    )
    tags = _tags_field(required=False, allow_null=True)
    properties = _properties_field(required=False, allow_null=True)
    started_at = ClientTimeField(
        required=False,
        allow_null=True,
        help_text="When the run really started, in unix seconds (a run the SDK created offline "
        "and sends late); a future time is taken as now. Default: now.",
    )


class RunUpdateRequestSerializer(serializers.Serializer):
    """A field that is absent or null stays as it is."""

    display_name = string_field(
        max_length=limits.DISPLAY_NAME_MAX_LENGTH,
        pattern=LINE_PATTERN,
        required=False,
        allow_null=True,
    )
    description = string_field(
        max_length=limits.DESCRIPTION_MAX_LENGTH,
        pattern=TEXT_PATTERN,
        required=False,
        allow_null=True,
    )


class RunStatusRequestSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=RunStatus.choices)
    error = RunErrorSerializer(required=False, help_text="Why the run failed.")
    ended_at = ClientTimeField(
        required=False,
        allow_null=True,
        help_text="For a terminal status: when the run really ended, in unix seconds (e.g. sent "
        "late from the SDK's spool); kept between the run's start and now. Default: now.",
    )


class RunChildrenRequestSerializer(serializers.Serializer):
    """`count` or `runs` (runs/api/schema.py adds the anyOf that says one is required)."""

    count = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=limits.MAX_CHILDREN_PER_REQUEST,
        help_text="Makes this many children with status NotStarted (when `runs` is absent).",
    )
    runs = serializers.ListField(
        child=RunSpecSerializer(),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=limits.MAX_CHILDREN_PER_REQUEST,
        help_text=f"Describes each child (at most {limits.MAX_CHILDREN_PER_REQUEST}).",
    )


class TagsUpdateRequestSerializer(serializers.Serializer):
    set = _tags_field(
        required=False, allow_null=True, help_text="Keys to add or change (null: a bare tag)."
    )
    remove = serializers.ListField(
        child=NameField(),
        required=False,
        allow_null=True,
        max_length=limits.TAGS_PER_REQUEST,
        help_text="Keys to remove.",
    )


class PropertiesAddRequestSerializer(serializers.Serializer):
    properties = _properties_field(help_text="Immutable: a key keeps its first value.")


# ---------------------------------------------------------------------------------------------
# metrics


class MetricBatchSeriesSerializer(serializers.Serializer):
    """One series of a batch, as columns."""

    name = NameField()
    kind = serializers.ChoiceField(choices=MetricKind.choices, required=False, default="scalar")
    values = serializers.ListField(
        child=serializers.JSONField(),
        min_length=1,
        help_text="Numbers (scalar; NaN/Infinity as strings), strings (string, image: a file "
        "path), lists (list) or objects (row).",
    )
    steps = serializers.ListField(
        child=serializers.IntegerField(allow_null=True),
        required=False,
        help_text="One per value; null (or absent) means the point's sequence number.",
    )
    times = serializers.ListField(
        child=serializers.FloatField(
            allow_null=True,
            min_value=-limits.POINT_TIME_ABS_MAX,
            max_value=limits.POINT_TIME_ABS_MAX,
        ),
        required=False,
        help_text="Epoch seconds, one per value; null (or absent) means the server's clock.",
    )


class MetricBatchRequestSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=limits.IDEMPOTENCY_KEY_MAX_LENGTH,
        help_text="A batch whose key this run has seen is stored once (`duplicate: true`).",
    )
    metrics = MetricBatchSeriesSerializer(
        many=True,
        help_text=f"At most {limits.MAX_SERIES_PER_BATCH} series and "
        f"{limits.MAX_POINTS_PER_BATCH} points; validated whole, a failing batch writes nothing.",
    )


# ---------------------------------------------------------------------------------------------
# files


# ---------------------------------------------------------------------------------------------
# compute targets and submission


class ComputeTargetCreateRequestSerializer(serializers.Serializer):
    name = serializers.RegexField(limits.COMPUTE_TARGET_NAME_RE.pattern)
    capacity = serializers.IntegerField(
        required=False, default=1, min_value=1, max_value=limits.COMPUTE_TARGET_CAPACITY_MAX
    )
    description = string_field(
        max_length=255,
        pattern=TEXT_PATTERN,
        required=False,
        allow_null=True,
        help_text="null: none.",
    )


class ComputeTargetUpdateRequestSerializer(serializers.Serializer):
    capacity = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=limits.COMPUTE_TARGET_CAPACITY_MAX
    )
    description = string_field(
        max_length=255,
        pattern=TEXT_PATTERN,
        required=False,
        allow_null=True,
        help_text="null: unchanged.",
    )


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """An uploaded file (multipart), as bytes rather than the URL a FileField reads back."""


class RunSubmitFormSerializer(serializers.Serializer):
    config = serializers.CharField(
        help_text="JSON: `{script, arguments?: [str], compute_target?, display_name?, "
        "description?, tags?, properties?, parent_run_id?}`; no `compute_target` means `local`."
    )
    snapshot = UploadField(
        help_text=f"A zip of the source directory (unpacked at most {limits.SNAPSHOT_MAX_BYTES} "
        f"bytes and {limits.SNAPSHOT_MAX_FILES} files)."
    )


# ---------------------------------------------------------------------------------------------
# alert rules


class AlertRuleUpdateRequestSerializer(serializers.Serializer):
    """Only the given fields change."""

    name = string_field(
        max_length=100,
        pattern=RULE_NAME_PATTERN,
        required=False,
        help_text="One line with at least one character that is not a space.",
    )
    statuses = serializers.ListField(
        child=serializers.ChoiceField(choices=RunStatus.choices), required=False, min_length=1
    )
    channel = serializers.ChoiceField(choices=AlertChannel.choices, required=False)
    experiment = serializers.CharField(
        required=False, allow_null=True, help_text="null or empty: any experiment."
    )
    # Each is checked only for its channel (runs/api/schema.py adds which, for a new rule).
    recipients = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="E-mail addresses, for an e-mail rule (at least one).",
    )
    webhook_url = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="An http:// or https:// URL, for a webhook rule.",
    )
    enabled = serializers.BooleanField(required=False)


class AlertRuleCreateRequestSerializer(AlertRuleUpdateRequestSerializer):
    name = string_field(
        max_length=100,
        pattern=RULE_NAME_PATTERN,
        help_text="One line with at least one character that is not a space.",
    )
    statuses = serializers.ListField(
        child=serializers.ChoiceField(choices=RunStatus.choices), min_length=1
    )
    channel = serializers.ChoiceField(choices=AlertChannel.choices)
    enabled = serializers.BooleanField(required=False, default=True)


# a bare byte stream, for the file endpoints
BINARY = {"application/octet-stream": OpenApiTypes.BINARY}
