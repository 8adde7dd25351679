"""``_OfflineRun``: what ``Run.get_context()`` returns when the script is not a submitted
run. It prints what it would log and keeps metrics, tags and properties in memory, so a
training script runs unchanged on a laptop."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from runs.sdk.client import Conflict
from runs.sdk.run import Run
from runs.sdk.values import coerce_value, error_text, plain, register_kind


class _OfflineRun(Run):
    """A run that talks to no server (Azure ML's ``_OfflineRun``)."""

    def __init__(self, parent: Run | None = None) -> None:
        self._id = f"OfflineRun_{uuid.uuid4()}"
        self._parent = parent
        self._parent_loaded = True
        self._metrics: dict[str, list[tuple[str, Any]]] = {}
        self._kinds: dict[str, str] = {}
        self._tags: dict[str, str | None] = {}
        self._properties: dict[str, str] = {}
        self._status = "Running"
        self._display_name = ""
        self._description = ""
        self._owned = False
        self._finished = False
        self._flusher = None
        self._details = None
        self._children: list[_OfflineRun] = []

    def __repr__(self) -> str:
        return f"_OfflineRun(Id: {self._id},\nStatus: {self._status})"

    @property
    def experiment(self) -> Any:  # type: ignore[override]
        return None

    @property
    def status(self) -> str:
        return self._status

    @property
    def type(self) -> str:
        return "offline"

    @property
    def display_name(self) -> str:
        return self._display_name

    @display_name.setter
    def display_name(self, value: str) -> None:
        self._display_name = value

    @property
    def description(self) -> str:
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = value

    @property
    def parent(self) -> Run | None:
        return self._parent

    def get_status(self) -> str:
        return self._status

    def get_details(self) -> dict[str, Any]:
        return {
            "runId": self._id,
            "status": self._status,
            "displayName": self._display_name,
            "description": self._description,
            "properties": dict(self._properties),
            "tags": dict(self._tags),
            "parentRunId": self._parent.id if self._parent is not None else None,
        }

    def get_portal_url(self) -> str:
        return ""

    # -- metrics --------------------------------------------------------------------------

    def _keep(self, name: str, kind: str, value: Any, label: str) -> None:
        register_kind(self._kinds, name, kind)
        print(f"Attempted to log {label} metric {name}:\n{value}")
        self._metrics.setdefault(name, []).append((kind, value))

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        t = type(value)
        if t is float or t is int:
            kind = "scalar"
        elif t is str:
            kind = "string"
        else:
            value, kind = coerce_value(value)
        self._keep(name, kind, value, "scalar")

    def log_list(self, name: str, value: Iterable[Any], description: str = "") -> None:
        self._keep(name, "list", plain(list(value)), "list")

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._keep(name, "row", {k: plain(v) for k, v in kwargs.items()}, "row")

    def log_table(
        self, name: str, value: Mapping[str, Iterable[Any]], description: str = ""
    ) -> None:
        columns = {k: list(v) for k, v in value.items()}
        if len({len(v) for v in columns.values()}) > 1:
            raise ValueError(
                f"log_table({name!r}): columns have different lengths; give every column the "
                "same number of values"
            )
        keys = list(columns)
        for row in zip(*columns.values(), strict=True):
            self._keep(name, "row", dict(zip(keys, map(plain, row), strict=True)), "table")

    def log_image(
        self,
        name: str,
        path: str | os.PathLike[str] | None = None,
        plot: Any = None,
        description: str = "",
    ) -> None:
        if (path is None) == (plot is None):
            raise ValueError("log_image() takes exactly one of path= or plot=")
        self._keep(name, "image", str(path) if path is not None else "<plot>", "image")

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def get_metrics(
        self, name: str | Iterable[str] | None = None, recursive: bool = False
    ) -> dict[str, Any]:
        names = [name] if isinstance(name, str) else list(name) if name is not None else None
        result: dict[str, Any] = {}
        for key, points in self._metrics.items():
            if names is not None and key not in names:
                continue
            kind = points[0][0]
            values = [v for _, v in points]
            if kind == "list":
                result[key] = [x for v in values for x in v]
            elif kind == "row":
                columns = list(dict.fromkeys(col for row in values for col in row))
                result[key] = {col: [row.get(col) for row in values] for col in columns}
            else:
                result[key] = values
        return {self._id: result} if recursive else result

    # -- tags and properties --------------------------------------------------------------

    def set_tags(self, tags: Mapping[str, Any] | Iterable[str] | str) -> None:
        if isinstance(tags, str):
            tags = {tags: None}
        elif not isinstance(tags, Mapping):
            tags = dict.fromkeys(tags)
        self._tags.update({str(k): None if v is None else str(v) for k, v in tags.items()})

    def remove_tag(self, key: str) -> None:
        self._tags.pop(key, None)

    def get_tags(self) -> dict[str, str | None]:
        return dict(self._tags)

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        new = {str(k): str(v) for k, v in properties.items()}
        for k, v in new.items():
            stored = self._properties.get(k)
            if stored is not None and stored != v:
                raise Conflict(
                    f"property {k!r} is already set to {stored!r}; properties cannot change, "
                    f"so {v!r} was refused",
                    status=409,
                    code="property_conflict",
                    field=f"properties.{k}",
                )
        self._properties.update(new)

    def get_properties(self) -> dict[str, str]:
        return dict(self._properties)

    # -- files: nothing to store them in ---------------------------------------------------

    def upload_file(self, name: str, path_or_stream: str | os.PathLike[str] | IO[bytes]) -> dict:
        print(f"Attempted to upload file {name}")
        return {"path": name}

    def upload_folder(self, name: str, path: str | os.PathLike[str]) -> list[dict]:
        print(f"Attempted to upload folder {name} from {path}")
        return []

    def get_file_names(self) -> list[str]:
        return []

    # -- status and children ---------------------------------------------------------------

    def _finish(self, status: str, error: dict[str, str] | None = None) -> None:
        self._status = status

    def start(self) -> None:
        self._status = "Running"

    def fail(self, error_details: Any = None, error_code: str | None = None) -> None:
        code = error_code or "UserError"
        print(f"Attempted to fail run with {code}: {error_text(error_details)}")
        self._status = "Failed"

    def cancel(self) -> None:
        self._status = "Canceled"

    def child_run(self, name: str | None = None, run_id: str | None = None) -> Run:
        child = _OfflineRun(parent=self)
        if name:
            child._display_name = name
        self._children.append(child)
        return child

    def create_children(
        self,
        count: int | None = None,
        tag_key: str | None = None,
        tag_values: Iterable[str] | None = None,
    ) -> list[Run]:
        children: list[Run] = []
        if tag_key is not None and tag_values is not None:
            for v in tag_values:
                child = _OfflineRun(parent=self)
                child._tags[tag_key] = str(v)
                child._status = "NotStarted"
                children.append(child)
        else:
            for _ in range(count or 0):
                child = _OfflineRun(parent=self)
                child._status = "NotStarted"
                children.append(child)
        self._children.extend(children)  # type: ignore[arg-type]
        return children

    def get_children(self, recursive: bool = False, **filters: Any) -> Iterator[Run]:
        queue: list[_OfflineRun] = list(self._children)
        while queue:
            child = queue.pop(0)
            yield child
            if recursive:
                queue.extend(child._children)
