"""The run search language: one parser for the search bar, saved views, the REST API (`?q=`)
and the CLI (`runstudio run list --filter`). A superset of MLflow's `filter_string`:

    metrics.loss.max < 0.5 AND (tags.team = 'vision' OR tags.team = "audio")
    status IN ('Running', 'Queued') AND NOT experiment LIKE 'tmp%'
    resnet adam                      -- bare words search the text fields (both must match)

`parse(text)` returns the syntax tree's meaning as a `django.db.models.Q` over `Run` (tags,
properties and metrics as `id IN (subquery)`), so the whole query is one SQL statement.
`parse_field(text)` reads one key (`tags.team`, ``metrics.`val loss`.max``) — the run list's
column and sort keys share it. Bad input raises `QueryError` (an `InvalidInput` on field `q`)
whose message names the column and what was expected. docs/architecture.md has the reference.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache

from django.contrib.auth import get_user_model
from django.db.models import CharField, Exists, F, Lookup, OuterRef, Q, TextField
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from runs import limits
from runs.errors import InvalidInput
from runs.models import Experiment, MetricSeries, RunProperty, RunStatus, RunTag

QUERY_MAX_LENGTH = limits.QUERY_MAX_LENGTH
IN_LIST_MAX = 1_000
# The first and last moments a search may name (runs.limits.DATE_MIN / DATE_MAX): outside them
# a time zone offset or a day's end would step out of datetime's range (an OverflowError).
MOMENT_MIN = datetime.combine(datetime.fromisoformat(limits.DATE_MIN).date(), time.min, UTC)
MOMENT_MAX = datetime.combine(datetime.fromisoformat(limits.DATE_MAX).date(), time.max, UTC)

# A word is anything up to white space, a parenthesis, a comma, an operator or a quote;
# keys are dotted words whose segments may be `back-quoted` (or "double-quoted" after a dot).
_W = r"""[^\s()=!<>,'"`.]"""
_END = r"""(?![^\s()=!<>,'"`])"""  # keywords and numbers end where a word would
_SEG = rf"(?:{_W}+|`[^`]*`)"

GRAMMAR = rf"""
    start: or_expr?

    ?or_expr: and_expr (_OR and_expr)*
    ?and_expr: not_expr (_AND? not_expr)*
    ?not_expr: _NOT not_expr -> negation
             | atom
    ?atom: comparison
         | _LPAR or_expr _RPAR
         | WORD -> bare
         | STRING -> bare
         | NUMBER -> bare

    comparison: WORD OP value                 -> compare
              | WORD IN _LPAR values _RPAR    -> in_list
              | WORD NOT_IN _LPAR values _RPAR -> in_list
              | WORD LIKE value               -> like
              | WORD NOT_LIKE value           -> like

    values: value (_COMMA value)* _COMMA?
    ?value: STRING | NUMBER | WORD

    OP: "!=" | "<>" | "<=" | ">=" | "==" | "=" | "<" | ">"
    _LPAR: "("
    _RPAR: ")"
    _COMMA: ","
    NOT_IN.4: /not\s+in{_END}/i
    NOT_LIKE.4: /not\s+i?like{_END}/i
    IN.3: /in{_END}/i
    LIKE.3: /i?like{_END}/i
    _AND.3: /and{_END}/i
    _OR.3: /or{_END}/i
    _NOT.3: /not{_END}/i
    NUMBER.2: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?{_END}/
    STRING: /'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/s
    WORD: /{_SEG}(?:\.(?:{_SEG}|"[^"]*"))*/

    %import common.WS
    %ignore WS
"""


class QueryError(InvalidInput):
    """A query that does not parse or names something unknown. Always on field `q`."""

    def __init__(self, message: str, *, column: int | None = None):
        super().__init__(message, field="q")
        self.column = column


# ---------------------------------------------------------------------------------------------
# Keys: attributes, tags.<k>, properties.<k> (alias params.<k>), metrics.<name>[.last|min|max]


@dataclass(frozen=True)
class Attribute:
    name: str  # canonical name, as shown in column keys
    label: str
    lookup: str  # the Django lookup path on Run
    kind: str  # text, status, datetime, duration


ATTRIBUTES = {
    a.name: a
    for a in [
        Attribute("display_name", "Display name", "display_name", "text"),
        Attribute("run_id", "Run id", "run_id", "text"),
        Attribute("experiment", "Experiment", "experiment__name", "text"),
        Attribute("status", "Status", "status", "status"),
        Attribute("submitter", "Submitted by", "submitter__username", "text"),
        Attribute("compute_target", "Compute target", "compute_target", "text"),
        Attribute("run_type", "Run type", "run_type", "text"),
        Attribute("created", "Created", "created_at", "datetime"),
        Attribute("started", "Started", "started_at", "datetime"),
        Attribute("ended", "Ended", "ended_at", "datetime"),
        Attribute("duration", "Duration", "duration", "duration"),
        Attribute("description", "Description", "description", "text"),
        Attribute("parent", "Parent run", "parent__run_id", "text"),
    ]
}

ATTRIBUTE_ALIASES = {
    "name": "display_name",
    "run_name": "display_name",
    "displayname": "display_name",
    "id": "run_id",
    "runid": "run_id",
    "experiment_name": "experiment",
    "user": "submitter",
    "user_id": "submitter",
    "submitted_by": "submitter",
    "target": "compute_target",
    "compute": "compute_target",
    "type": "run_type",
    "created_at": "created",
    "created_time": "created",
    "start_time": "started",
    "started_at": "started",
    "end_time": "ended",
    "ended_at": "ended",
    "parent_id": "parent",
    "parent_run_id": "parent",
}

ATTRIBUTE_PREFIXES = {"attributes", "attribute", "attr", "run"}
TAG_PREFIXES = {"tags", "tag"}
PROPERTY_PREFIXES = {"properties", "property", "props", "params", "param", "parameters"}
METRIC_PREFIXES = {"metrics", "metric"}
AGGREGATES = {"last": "last_value", "latest": "last_value", "min": "min_value", "max": "max_value"}

_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")


def _quote_segment(text: str) -> str:
    return text if _PLAIN_SEGMENT.fullmatch(text) else f"`{text}`"


@dataclass(frozen=True)
class Field:
    """What a key names: an attribute, a tag, a property or a metric's last/min/max."""

    kind: str  # attribute, tag, property, metric
    name: str  # attribute name, tag/property key, or metric name
    agg: str = ""  # metrics only: last, min or max

    @property
    def key(self) -> str:
        """The canonical spelling, which `parse_field` reads back to the same Field."""
        if self.kind == "attribute":
            return self.name
        if self.kind == "tag":
            return f"tags.{_quote_segment(self.name)}"
        if self.kind == "property":
            return f"properties.{_quote_segment(self.name)}"
        return f"metrics.{_quote_segment(self.name)}.{self.agg}"

    @property
    def label(self) -> str:
        if self.kind == "attribute":
            return ATTRIBUTES[self.name].label
        if self.kind == "metric":
            return f"{self.name} ({self.agg})"
        return self.name

    @property
    def metric_column(self) -> str:
        return AGGREGATES[self.agg]


_SEGMENT_RE = re.compile(r"""`([^`]*)`|"([^"]*)"|([^.`"]+)""")


def _segments(word: str) -> list[tuple[str, bool]]:
    """`a.`b c`.d` → [("a", False), ("b c", True), ("d", False)]; True: the segment was quoted."""
    parts, pos = [], 0
    while pos < len(word):
        match = _SEGMENT_RE.match(word, pos)
        if match is None:  # the grammar only lets well-formed words through
            raise QueryError(f"Cannot read the key {word!r}.")
        if match.group(3) is not None:
            parts.append((match.group(3), False))
        else:
            parts.append((match.group(1) if match.group(1) is not None else match.group(2), True))
        pos = match.end()
        if pos < len(word) and word[pos] == ".":
            pos += 1
    return parts


FIELD_HELP = (
    "use an attribute (display_name, run_id, experiment, status, submitter, compute_target, "
    "run_type, created, started, ended, duration, description, parent), tags.<key>, "
    "properties.<key> (or params.<key>) or metrics.<name>[.last|.min|.max]"
)


def _field_from_word(word: str, *, column: int | None = None, strict: bool = True) -> Field | None:
    """The Field a key names; None (when not strict) if the word is not a key."""
    parts = _segments(word)
    head, head_quoted = parts[0]
    prefix = head.lower() if not head_quoted else ""
    rest = parts[1:]
    where = f" at column {column}" if column else ""
    if prefix in TAG_PREFIXES | PROPERTY_PREFIXES | METRIC_PREFIXES and rest:
        kind = (
            "tag"
            if prefix in TAG_PREFIXES
            else "property"
            if prefix in PROPERTY_PREFIXES
            else "metric"
        )
        agg = ""
        if kind == "metric":
            agg = "last"
            last, last_quoted = rest[-1]
            if len(rest) > 1 and not last_quoted and last.lower() in AGGREGATES:
                agg = "last" if last.lower() == "latest" else last.lower()
                rest = rest[:-1]
        # MLflow keeps dots inside keys (tags.mlflow.runName): the rest is the key.
        name = ".".join(text for text, _ in rest)
        if not name:
            raise QueryError(f"Empty {kind} name{where}.", column=column)
        return Field(kind, name, agg)
    if prefix in ATTRIBUTE_PREFIXES and len(rest) == 1:
        head, head_quoted = rest[0]
        rest = []
    if not rest and not head_quoted:
        name = ATTRIBUTE_ALIASES.get(head.lower(), head.lower())
        if name in ATTRIBUTES:
            return Field("attribute", name)
    if strict:
        raise QueryError(f"Unknown field {word!r}{where}: {FIELD_HELP}.", column=column)
    return None


def parse_field(text: str) -> Field:
    """One key, e.g. `status`, `tags.team`, ``metrics.`val loss`.max``. Raises QueryError."""
    text = (text or "").strip()
    if not re.fullmatch(rf"""{_SEG}(?:\.(?:{_SEG}|"[^"]*"))*""", text):
        raise QueryError(f"Unknown field {text!r}: {FIELD_HELP}.")
    return _field_from_word(text)


# ---------------------------------------------------------------------------------------------
# Values


def _unquote(token: Token) -> str:
    text = str(token)
    if token.type == "STRING":
        return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.S)
    if token.type == "WORD":
        return "".join(seg for seg, _ in _segments(text)) if "`" in text else text
    return text


def _number(token: Token, field: Field) -> float:
    text = _unquote(token)
    try:
        value = float(text)
    except ValueError:
        raise QueryError(
            f"{field.key} at column {token.column}: {text!r} is not a number.",
            column=token.column,
        ) from None
    if not math.isfinite(value):
        raise QueryError(f"{field.key}: compare with a finite number.", column=token.column)
    return value


# MLflow's status names (its filter_string says `status = 'FINISHED'`); RUNNING and FAILED
# are ours already, matched case-insensitively.
MLFLOW_STATUSES = {
    "finished": RunStatus.COMPLETED,
    "killed": RunStatus.CANCELED,
    "scheduled": RunStatus.QUEUED,
}


def _status(token: Token) -> str:
    text = _unquote(token)
    by_lower = {s.lower(): s for s in RunStatus.values} | MLFLOW_STATUSES
    if text.lower() not in by_lower:
        raise QueryError(
            f"status at column {token.column}: {text!r} is not a run status "
            f"(one of {', '.join(RunStatus.values)}).",
            column=token.column,
        )
    return by_lower[text.lower()]


def _moment(token: Token, field: Field) -> tuple[datetime, datetime]:
    """A time as [start, end): a date is the whole day; a number is Unix time in ms (MLflow)."""
    text = _unquote(token)
    if token.type == "NUMBER":
        try:
            moment = datetime.fromtimestamp(float(text) / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise QueryError(
                f"{field.key} at column {token.column}: {text} is out of range.",
                column=token.column,
            ) from None
        return _in_range(moment, field, token), moment
    moment = day = None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):  # a date alone means the whole day
            day = parse_date(text)
        else:
            moment = parse_datetime(text.replace(" ", "T", 1) if " " in text else text)
    except ValueError:
        pass
    if moment is not None:
        if timezone.is_naive(moment):
            moment = moment.replace(tzinfo=UTC)
        return _in_range(moment, field, token), moment
    if day is not None:
        start = _in_range(datetime.combine(day, time.min, tzinfo=UTC), field, token)
        return start, start + timedelta(days=1)
    raise QueryError(
        f"{field.key} at column {token.column}: {text!r} is not a date or time "
        "(use '2024-05-01', '2024-05-01T13:30:00Z' or Unix milliseconds).",
        column=token.column,
    )


def _in_range(moment: datetime, field: Field, token: Token) -> datetime:
    # Aware datetimes compare by their UTC instant without building it, so this never overflows.
    if not MOMENT_MIN <= moment <= MOMENT_MAX:
        raise QueryError(
            f"{field.key} at column {token.column}: {_unquote(token)!r} is out of range; times "
            f"must fall between {limits.DATE_MIN} and {limits.DATE_MAX} (DATE_MIN, DATE_MAX).",
            column=token.column,
        )
    return moment


_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min|h|d)?\s*$", re.I)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _duration(token: Token) -> timedelta:
    match = _DURATION_RE.match(_unquote(token))
    if not match:
        raise QueryError(
            f"duration at column {token.column}: {_unquote(token)!r} is not a duration "
            "(seconds, or a number with s, m, h or d, e.g. '90s', '5m').",
            column=token.column,
        )
    unit = (match.group(2) or "s").lower()
    seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if seconds > limits.DURATION_MAX_DAYS * 86400:
        raise QueryError(
            f"duration at column {token.column}: {_unquote(token)!r} is longer than "
            f"{limits.DURATION_MAX_DAYS} days (DURATION_MAX_DAYS).",
            column=token.column,
        )
    return timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------
# Compiling comparisons to Q

_LOOKUPS = {"=": "exact", "==": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


class _LikePattern(Lookup):
    """`column LIKE pattern ESCAPE '\\'`, case-insensitive: SQLite's LIKE folds ASCII case
    (as Django's icontains does there), PostgreSQL gets ILIKE. Both engines match LIKE without
    backtracking blow-ups (a failed `%` gives up instead of retrying every position), unlike
    the regular expression this used to become, whose Python REGEXP on SQLite took 30 s for
    '%a%a%a%a%a%a%a_b' against a megabyte of 'a's."""

    lookup_name = "rs_like"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        operator = "ILIKE" if connection.vendor == "postgresql" else "LIKE"
        return f"{lhs} {operator} {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


CharField.register_lookup(_LikePattern)
TextField.register_lookup(_LikePattern)


def _like_lookup(pattern: str) -> tuple[str, str]:
    """SQL LIKE (% any run, _ one character, backslash escapes) → a portable Django lookup.

    Case-insensitive, like MLflow's ILIKE. The common shapes become icontains / istartswith /
    iendswith / iexact (plain LIKE in SQL); anything else a LIKE with the pattern rewritten
    with clean escapes. At most LIKE_MAX_WILDCARDS wildcards and LIKE_MAX_LENGTH characters."""
    if len(pattern) > limits.LIKE_MAX_LENGTH:
        raise QueryError(
            f"The LIKE pattern is {len(pattern)} characters long; the limit is "
            f"{limits.LIKE_MAX_LENGTH} (LIKE_MAX_LENGTH)."
        )
    tokens = re.findall(r"\\.|%|_|[^\\%_]+|\\", pattern)
    kinds = ["%" if t == "%" else "_" if t == "_" else "lit" for t in tokens]
    wildcards = len(kinds) - kinds.count("lit")
    if wildcards > limits.LIKE_MAX_WILDCARDS:
        raise QueryError(
            f"The LIKE pattern {pattern[:40]!r} has {wildcards} wildcards (% and _); the limit "
            f"is {limits.LIKE_MAX_WILDCARDS} (LIKE_MAX_WILDCARDS). Escape a literal % or _ "
            "with a backslash."
        )
    literal = [t[1:] if t.startswith("\\") and len(t) == 2 else t for t in tokens]
    if "_" not in kinds:
        inner = kinds[:]
        starts = bool(inner) and inner[0] == "%"
        ends = len(inner) > 1 and inner[-1] == "%"
        core = kinds[int(starts) : len(kinds) - int(ends)]
        if "%" not in core:
            text = "".join(literal[int(starts) : len(kinds) - int(ends)])
            if starts and ends:
                return "icontains", text
            if starts:
                return "iendswith", text
            if ends:
                return "istartswith", text
            if kinds == ["%"]:
                return "icontains", ""
            return "iexact", text
    like = "".join(
        k if k != "lit" else re.sub(r"([\\%_])", r"\\\1", text)
        for k, text in zip(kinds, literal, strict=True)
    )
    return "rs_like", like


def _text_q(path: str, op: str, values: list[str]) -> Q:
    if op in ("in", "not in"):
        q = Q(**{f"{path}__in": values})
        return ~q if op == "not in" else q
    if op in ("like", "not like"):
        lookup, value = _like_lookup(values[0])
        q = Q(**{f"{path}__{lookup}": value})
        return ~q if op == "not like" else q
    if op in ("!=", "<>"):
        return ~Q(**{path: values[0]})
    return Q(**{f"{path}__{_LOOKUPS[op]}": values[0]})


class _RunsWhere(Q):
    """`id IN (SELECT run_id FROM <model> WHERE <row>)`, remembering model and row so that
    OR can merge two of them on one table into a single subquery (see _Compiler.or_expr)."""

    def __init__(self, model, row: Q):
        super().__init__(pk__in=model.objects.filter(row).values("run_id"))
        self.model, self.row = model, row


def _runs_where(model, condition: Q, **fields) -> Q:
    """Runs with a matching tag / property / metric series row.

    `id IN (SELECT run_id …)` rather than a correlated EXISTS: the subquery is planned once
    and can start from the (key, value) or (name, …) index, so a selective tag condition
    narrows 100,000 runs to its matches instead of being probed once per run."""
    return _RunsWhere(model, condition & Q(**fields))


_PER_RUN_MODELS = (RunTag, RunProperty, MetricSeries)


def probing(q: Q) -> Q:
    """The same condition with every `id IN (SELECT run_id …)` of a tag, property or metric
    as a correlated `EXISTS (… WHERE run_id = run.id)`: one index probe per run instead of the
    whole matching set first. For checking a few hundred candidate runs (the run list walks
    its sort order, runs/selectors/run_pages.py): SQLite materialises an IN subquery in full
    before the first row — 200,000 run ids for `tags.model = 'vit'` on 1M runs — and never
    turns one form into the other; PostgreSQL plans both as the same semi-join."""
    out = Q(_connector=q.connector, _negated=q.negated)
    for child in q.children:
        if isinstance(child, Q):
            child = probing(child)
        elif (
            isinstance(child, tuple)
            and child[0] == "pk__in"
            and getattr(child[1], "model", None) in _PER_RUN_MODELS
        ):
            child = Exists(child[1].filter(run_id=OuterRef("pk")))
        out.children.append(child)
    return out


def _exists(model, field: Field, condition: Q) -> Q:
    return _runs_where(model, condition, key=field.name)


def _compare(field: Field, op: str, tokens: list[Token]) -> Q:
    if field.kind in ("tag", "property"):
        model = RunTag if field.kind == "tag" else RunProperty
        values = [_unquote(t) for t in tokens]
        if op in ("!=", "<>", "not in", "not like"):
            # MLflow's rule: a run without the key matches neither `=` nor `!=`.
            positive = {"!=": "=", "<>": "=", "not in": "in", "not like": "like"}[op]
            return _exists(
                model, field, Q(value__isnull=False) & ~_text_q("value", positive, values)
            )
        return _exists(model, field, _text_q("value", op, values))
    if field.kind == "metric":
        if op in ("like", "not like"):
            raise QueryError(f"{field.key}: LIKE compares text; metrics are numbers.")
        numbers = [_number(t, field) for t in tokens]
        column = field.metric_column
        if op in ("in", "not in"):
            condition = Q(**{f"{column}__in": numbers})
        elif op in ("!=", "<>"):
            condition = ~Q(**{column: numbers[0]})
        else:
            condition = Q(**{f"{column}__{_LOOKUPS[op]}": numbers[0]})
        if op == "not in":
            condition = ~condition
        return _runs_where(
            MetricSeries, condition & Q(**{f"{column}__isnull": False}), name=field.name
        )
    attribute = ATTRIBUTES[field.name]
    if attribute.kind == "status":
        return _text_q("status", op, [_status(t) for t in tokens])
    if attribute.kind == "datetime":
        return _time_q(attribute.lookup, field, op, tokens)
    if attribute.kind == "duration":
        return _duration_q(op, tokens)
    return _text_q(attribute.lookup, op, [_unquote(t) for t in tokens])


def _time_q(path: str, field: Field, op: str, tokens: list[Token]) -> Q:
    if op in ("like", "not like"):
        raise QueryError(f"{field.key}: LIKE compares text; compare times with =, <, > …")
    if op in ("in", "not in"):
        q = Q()
        for token in tokens:
            q |= _time_q(path, field, "=", [token])
        return ~q if op == "not in" else q
    start, end = _moment(tokens[0], field)
    if start == end:
        if op in ("!=", "<>"):
            return ~Q(**{path: start})
        return Q(**{f"{path}__{_LOOKUPS[op]}": start})
    # A whole day: = is within it, < before it, <= up to its end, and so on.
    within = Q(**{f"{path}__gte": start, f"{path}__lt": end})
    return {
        "=": within,
        "==": within,
        "!=": ~within,
        "<>": ~within,
        "<": Q(**{f"{path}__lt": start}),
        "<=": Q(**{f"{path}__lt": end}),
        ">": Q(**{f"{path}__gte": end}),
        ">=": Q(**{f"{path}__gte": start}),
    }[op]


def _duration_q(op: str, tokens: list[Token]) -> Q:
    """ended - started, or now - started while a run is still going; runs not started have
    no duration. Written as comparisons of columns so that it runs on SQLite and PostgreSQL."""
    if op in ("like", "not like"):
        raise QueryError("duration: LIKE compares text; compare durations with <, > …")
    if op in ("in", "not in"):
        q = Q()
        for token in tokens:
            q |= _duration_q("=", [token])
        return ~q if op == "not in" else q
    span = _duration(tokens[0])
    if op in ("!=", "<>"):
        return Q(started_at__isnull=False) & ~_duration_q("=", tokens)
    lookup = _LOOKUPS[op]
    now = timezone.now()
    # Mirror the operator for the running case: now - started > span ⇔ started < now - span.
    mirrored = {"exact": "exact", "lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}[lookup]
    ended = Q(ended_at__isnull=False, **{f"ended_at__{lookup}": F("started_at") + span})
    running = Q(ended_at__isnull=True, **{f"started_at__{mirrored}": now - span})
    return Q(started_at__isnull=False) & (ended | running)


def _text_search(word: str) -> Q:
    """A bare word: in display name, run id, description, experiment, submitter or a tag."""
    users = get_user_model().objects.filter(username__icontains=word).values("pk")
    experiments = Experiment.objects.filter(name__icontains=word).values("pk")
    return (
        Q(display_name__icontains=word)
        | Q(run_id__icontains=word)
        | Q(description__icontains=word)
        | Q(experiment__in=experiments)
        | Q(submitter__in=users)
        | _runs_where(RunTag, Q(key__icontains=word) | Q(value__icontains=word))
    )


def _has(field: Field) -> Q:
    """A bare `tags.k` / `properties.k` / `metrics.m`: the run has it."""
    if field.kind == "metric":
        return _runs_where(MetricSeries, Q(), name=field.name)
    return _runs_where(RunTag if field.kind == "tag" else RunProperty, Q(), key=field.name)


@v_args(inline=True)
class _Compiler(Transformer):
    def start(self, expr=None):
        return expr if expr is not None else Q()

    def or_expr(self, *items):
        # `id IN (A) OR id IN (B)` on one table becomes `id IN (A OR B)`: one index pass
        # instead of two subqueries the planner joins (tags.x = 'a' OR tags.x = 'b').
        merged: list[Q] = []
        for item in items:
            last = merged[-1] if merged else None
            # getattr: Q's own operators build new nodes of this class without the fields.
            model = getattr(item, "model", None)
            if model is not None and model is getattr(last, "model", None):
                merged[-1] = _RunsWhere(model, last.row | item.row)
            else:
                merged.append(item)
        q = merged[0]
        for item in merged[1:]:
            q = q | item
        return q

    def and_expr(self, *items):
        q = items[0]
        for item in items[1:]:
            q = q & item
        return q

    def negation(self, item):
        return ~item

    def bare(self, token):
        if token.type == "WORD" and "." in token:
            field = _field_from_word(str(token), column=token.column, strict=False)
            if field is not None and field.kind != "attribute":
                return _has(field)
        return _text_search(_unquote(token))

    def compare(self, key, op, value):
        op = str(op)
        return _compare(_field_from_word(str(key), column=key.column), op, [value])

    def in_list(self, key, op, values):
        op = "not in" if op.type == "NOT_IN" else "in"
        if len(values) > IN_LIST_MAX:
            raise QueryError(f"IN lists hold at most {IN_LIST_MAX} values.", column=key.column)
        return _compare(_field_from_word(str(key), column=key.column), op, values)

    def like(self, key, op, value):
        op = "not like" if op.type == "NOT_LIKE" else "like"
        if value.type == "NUMBER":
            value = Token("STRING", f"'{value}'", line=value.line, column=value.column)
        return _compare(_field_from_word(str(key), column=key.column), op, [value])

    def values(self, *items):
        return list(items)


# ---------------------------------------------------------------------------------------------
# Errors a person can act on

_DESCRIBE = {
    "WORD": "a key or word",
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "OP": "an operator",
    "IN": "IN",
    "NOT_IN": "NOT IN",
    "LIKE": "LIKE",
    "NOT_LIKE": "NOT LIKE",
    "_LPAR": "'('",
    "_RPAR": "')'",
    "_COMMA": "','",
    "_AND": "AND",
    "_OR": "OR",
    "_NOT": "NOT",
}
_VALUE_TOKENS = {"WORD", "STRING", "NUMBER"}
_OPERATOR_TOKENS = {"OP", "IN", "NOT_IN", "LIKE", "NOT_LIKE"}


def _expected(expected: set[str]) -> str:
    expected = {e for e in expected if e != "$END"}
    if not expected:
        return "the end of the query"
    if expected <= _VALUE_TOKENS:
        return "a value"
    if expected >= _OPERATOR_TOKENS and not expected & _VALUE_TOKENS:
        return "an operator (=, !=, <, <=, >, >=, IN, NOT IN, LIKE)"
    if expected >= {"WORD", "STRING", "_LPAR", "_NOT"}:
        return "a search term, a comparison, NOT or '('"
    if expected == {"_COMMA", "_RPAR"}:
        return "',' or ')'"
    names = sorted(_DESCRIBE.get(e, e) for e in expected)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _before(text: str, pos: int) -> str:
    """The token just before `pos`, to say what the expectation follows."""
    head = text[:pos].rstrip()
    match = re.search(r"""(!=|<>|<=|>=|==|[=<>(),]|[^\s()=!<>,]+)$""", head)
    return match.group(1) if match else ""


def _syntax_error(text: str, exc: UnexpectedInput) -> QueryError:
    if isinstance(exc, UnexpectedCharacters):
        column, char = exc.column, text[exc.pos_in_stream]
        if char in "'\"":
            return QueryError(
                f"Syntax error at column {column}: the quoted string starting here has no "
                f"closing {char}.",
                column=column,
            )
        if char == "`":
            return QueryError(
                f"Syntax error at column {column}: the `quoted key starting here has no closing `.",
                column=column,
            )
        allowed = _expected(set(exc.allowed or ()))
        return QueryError(
            f"Syntax error at column {column}: unexpected {char!r}; expected {allowed}.",
            column=column,
        )
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        at_end = token.type == "$END"
        pos = len(text) if at_end else token.start_pos
        column = len(text) + 1 if at_end else token.column
        expected = exc.expected
    elif isinstance(exc, UnexpectedEOF):
        pos, column, at_end, expected = len(text), len(text) + 1, True, set(exc.expected)
    else:  # pragma: no cover - lark's other errors
        return QueryError(f"Syntax error: {exc}")
    previous = _before(text, pos)
    after = f" after {previous!r}" if previous else ""
    found = " but the query ends" if at_end else f", found {str(token)!r}"
    return QueryError(
        f"Syntax error at column {column}: expected {_expected(set(expected))}{after}{found}.",
        column=column,
    )


_NESTING = {"or_expr", "and_expr", "negation"}
_TERMS = {"compare", "like", "bare"}


def _check_size(tree: Tree) -> None:
    """Depth and term count, walked without recursion, before the (recursive) compiler and
    the database see the tree: 950 NOTs or 283 nested ORs overflowed Python's stack, and 495
    ORed words an SQLite expression tree, each a 500."""
    terms = 0
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING:
            depth += 1
            if depth > limits.QUERY_MAX_DEPTH:
                raise QueryError(
                    f"The query nests deeper than {limits.QUERY_MAX_DEPTH} levels of "
                    "parentheses, AND/OR and NOT (QUERY_MAX_DEPTH); simplify it."
                )
        elif node.data in _TERMS:
            terms += 1
        elif node.data == "in_list":
            # Over times and durations each value becomes its own condition.
            key, _, values = node.children
            field = _field_from_word(str(key), strict=False)
            spread = field is not None and field.kind == "attribute"
            spread = spread and ATTRIBUTES[field.name].kind in ("datetime", "duration")
            terms += len(values.children) if spread else 1
        if terms > limits.QUERY_MAX_TERMS:
            raise QueryError(
                f"The query has more than {limits.QUERY_MAX_TERMS} terms (comparisons, words "
                "and the values of an IN list over times) (QUERY_MAX_TERMS); split it or use "
                "IN (…) for a list of values."
            )
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=False)


def parse(text: str | None) -> Q:
    """Compile a search to one Q over Run (an empty search is `Q()`). Raises QueryError."""
    text = (text or "").strip()
    if len(text) > QUERY_MAX_LENGTH:
        raise QueryError(f"The query is longer than {QUERY_MAX_LENGTH} characters.")
    if not text:
        return Q()
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    _check_size(tree)
    try:
        return _Compiler().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, QueryError):
            raise exc.orig_exc from None
        raise


# For the REST API and the CLI's documentation: `runs.query.parse` is the compile function.
compile_query = parse
__all__ = ["ATTRIBUTES", "Field", "QueryError", "compile_query", "parse", "parse_field", "probing"]
