"""``Workspace``: which server, which token, which workspace (Azure ML's shape)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from runs.sdk import config
from runs.sdk.client import Client, quote_segment

if TYPE_CHECKING:
    from runs.sdk.experiment import Experiment
    from runs.sdk.run import Run


class Workspace:
    """A workspace on a Runstudio server.

    ``Workspace("team")`` builds a handle without a network call (server and token from the
    environment, the folder config or ``runstudio login``); ``Workspace.get`` and
    ``Workspace.from_config`` also check that it exists and that the token may see it.
    """

    def __init__(
        self,
        name: str,
        url: str | None = None,
        token: str | None = None,
        *,
        _client: Client | None = None,
    ) -> None:
        if _client is None:
            settings = config.resolve(url=url, token=token, workspace=name)
            _client = Client(settings.url, settings.token)
        self._name = name
        self._client = _client
        self._details: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Workspace.create(name={self._name!r}, url={self._client.url!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Workspace)
            and other._name == self._name
            and other._client.url == self._client.url
        )

    def __hash__(self) -> int:
        return hash((self._name, self._client.url))

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, *, _file_name: str | None = None
    ) -> Workspace:
        """The workspace named by ``.runstudio/config.json`` in ``path`` (default: the
        current folder) or a parent folder; ``path`` may also be the file itself."""
        settings = config.resolve(config_path=path, require_workspace=True)
        assert settings.workspace is not None
        return cls.get(settings.workspace, url=settings.url, token=settings.token)

    @classmethod
    def get(cls, name: str, url: str | None = None, token: str | None = None) -> Workspace:
        """The existing workspace ``name``; raises ``NotFound`` if the user cannot see it.

        A server that cannot be reached is not an error here: the handle is returned
        unchecked, so that ``start_logging()`` can start an offline run (the check then
        happens when the run is created on the server)."""
        from runs.sdk.client import ConnectionFailed

        ws = cls(name, url=url, token=token)
        try:
            ws._details = ws._client.get(f"/workspaces/{quote_segment(name)}")
        except ConnectionFailed:
            pass
        return ws

    @classmethod
    def create(
        cls,
        name: str,
        url: str | None = None,
        token: str | None = None,
        *,
        exist_ok: bool = False,
    ) -> Workspace:
        """Create workspace ``name`` (the caller becomes its owner).

        With ``exist_ok=True`` an existing workspace the user can see is returned instead
        of the server's 409.
        """
        from runs.sdk.client import Conflict

        ws = cls(name, url=url, token=token)
        try:
            ws._details = ws._client.post("/workspaces", {"name": name})
        except Conflict:
            if not exist_ok:
                raise
            ws._details = ws._client.get(f"/workspaces/{quote_segment(name)}")
        return ws

    @staticmethod
    def list(url: str | None = None, token: str | None = None) -> dict[str, Workspace]:
        """Workspaces the user belongs to, by name."""
        settings = config.resolve(url=url, token=token)
        client = Client(settings.url, settings.token)
        workspaces: dict[str, Workspace] = {}
        for item in client.paginate("/workspaces"):
            ws = Workspace(item["name"], _client=client)
            ws._details = item
            workspaces[item["name"]] = ws
        return workspaces

    # -- attributes -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return self._client.url

    @property
    def experiments(self) -> dict[str, Experiment]:
        """Experiments in this workspace, by name."""
        from runs.sdk.experiment import Experiment

        return {
            item["name"]: Experiment(self, item["name"], _details=item)
            for item in self._client.paginate(f"{self._api_path}/experiments")
        }

    @property
    def compute_targets(self) -> dict[str, Any]:
        """``{name: ComputeTarget}``: ``ws.compute_targets["gpu-cluster"]`` can be passed as
        ``ScriptRunConfig(compute_target=...)``."""
        from runs.sdk.submit import ComputeTarget

        answer = self._client.get(f"{self._api_path}/compute")
        return {t["name"]: ComputeTarget.from_json(t) for t in answer["results"]}

    def get_details(self) -> dict[str, Any]:
        self._details = self._client.get(f"/workspaces/{quote_segment(self._name)}")
        return dict(self._details)

    def get_run(self, run_id: str) -> Run:
        """Any run of this workspace by id."""
        from runs.sdk.run import Run

        return Run._from_id(self, run_id)

    def write_config(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write ``.runstudio/config.json`` in ``path`` (default: the current folder)."""
        written = config.write_folder_config(path or os.getcwd(), url=self.url, workspace=self.name)
        return str(written)

    @property
    def _api_path(self) -> str:
        return f"/workspaces/{quote_segment(self._name)}"
