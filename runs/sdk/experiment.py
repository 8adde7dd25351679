"""``Experiment``: a named group of runs in a workspace (Azure ML's shape)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from runs.sdk.client import quote_segment

if TYPE_CHECKING:
    from runs.sdk.run import Run
    from runs.sdk.workspace import Workspace

TagFilter = str | Iterable[str] | Mapping[str, str | None]


def tag_params(tags: TagFilter | None) -> list[tuple[str, str]]:
    """``tags`` as the list API's ``tag=`` parameters (repeated = AND).

    A string or list of strings asks for runs that carry those keys (any value); a dict
    asks for ``key=value`` pairs, where a ``None`` value means "has the key".
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        return [("tag", tags)]
    if isinstance(tags, Mapping):
        return [("tag", k if v is None else f"{k}={v}") for k, v in tags.items()]
    return [("tag", str(k)) for k in tags]


def property_params(properties: Mapping[str, str] | None) -> list[tuple[str, str]]:
    return [("property", f"{k}={v}") for k, v in (properties or {}).items()]


class Experiment:
    """``Experiment(workspace=ws, name="explore-runs")``; created on the server on first
    use (``start_logging``), so constructing one costs no network call."""

    def __init__(
        self, workspace: Workspace, name: str, *, _details: dict[str, Any] | None = None
    ) -> None:
        self._workspace = workspace
        self._name = name
        self._details = _details

    def __repr__(self) -> str:
        return f"Experiment(Name: {self._name},\nWorkspace: {self._workspace.name})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Experiment)
            and other._name == self._name
            and other._workspace == self._workspace
        )

    def __hash__(self) -> int:
        return hash((self._name, self._workspace))

    @property
    def name(self) -> str:
        return self._name

    @property
    def workspace(self) -> Workspace:
        return self._workspace

    @property
    def id(self) -> str:
        return self._name

    @property
    def _api_path(self) -> str:
        return f"{self._workspace._api_path}/experiments/{quote_segment(self._name)}"

    @staticmethod
    def list(workspace: Workspace) -> list[Experiment]:
        return list(workspace.experiments.values())

    def get_details(self) -> dict[str, Any]:
        self._details = self._workspace._client.get(self._api_path)
        return dict(self._details)

    def start_logging(
        self,
        *,
        display_name: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> Run:
        """Start an interactive run (status Running) and return it.

        Use it as a context manager (``with exp.start_logging() as run:``) to complete it on
        exit, or fail it with the exception that ended the block. A run left open is
        completed at interpreter exit (failed if the script died of an exception).

        If the server does not answer, the run starts offline (one line on stderr says so):
        it logs as usual, is created on the server when it answers, and whatever is still
        unsent at exit is spooled for ``runstudio sync``. A start that reaches the server
        sends runs spooled earlier, in the background.
        """
        from runs.sdk import spool
        from runs.sdk.client import RunstudioError, is_transient
        from runs.sdk.run import Run

        body: dict[str, Any] = {"run_type": "interactive", "status": "Running"}
        if display_name is not None:
            body["display_name"] = display_name
        if description is not None:
            body["description"] = description
        if tags:
            body["tags"] = dict(tags)
        if properties:
            body["properties"] = dict(properties)
        client = self._workspace._client
        try:
            details = client.post(f"{self._api_path}/runs", body)
        except RunstudioError as e:
            if not is_transient(e):
                raise
            return Run._started_offline(self, body, e)
        spool.sync_in_background(client.url)
        return Run._started(self, details)

    def get_runs(
        self,
        type: str | None = None,
        tags: TagFilter | None = None,
        properties: Mapping[str, str] | None = None,
        include_children: bool = False,
        status: str | Iterable[str] | None = None,
    ) -> Iterator[Run]:
        """Runs of this experiment, newest first, as a generator that pages lazily.

        ``tags`` is a key, a list of keys, or a dict of ``key: value`` (``None``: has the
        key); ``properties`` a dict of ``key: value``; every condition must hold.
        Top-level runs only unless ``include_children``; ``type`` filters on the run type.
        """
        from runs.sdk.run import Run

        params: list[tuple[str, Any]] = [("experiment", self._name)]
        params += tag_params(tags)
        params += property_params(properties)
        if isinstance(status, str):
            params.append(("status", status))
        elif status is not None:
            params += [("status", s) for s in status]
        if not include_children:
            params.append(("top_level", 1))
        for item in self._workspace._client.paginate(f"{self._workspace._api_path}/runs", params):
            if type is not None and item.get("run_type") != type:
                continue
            yield Run._from_details(self._workspace, item, experiment=self)

    def submit(
        self, config: Any, tags: Mapping[str, str | None] | None = None, **kwargs: Any
    ) -> Run:
        """Submit a ``ScriptRunConfig``: the source directory is packed (honouring
        ``.runstudioignore``/``.amlignore``) and uploaded, and the run queues on its compute
        target. Returns the run (status Queued); ``run.wait_for_completion(show_output=True)``
        streams its output."""
        from runs.sdk.run import Run
        from runs.sdk.submit import submit

        details = submit(
            self._workspace._client,
            workspace=self._workspace.name,
            experiment=self._name,
            config=config,
            tags=tags,
        )
        return Run._from_details(self._workspace, details, experiment=self)
