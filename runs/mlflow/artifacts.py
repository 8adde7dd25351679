"""MLflow's artifact proxy (`api/2.0/mlflow-artifacts/artifacts/…`) onto the run's own file
tree: `runs/<run id>/<path>`, written only under `outputs/`, through storage's services."""

from django.http import StreamingHttpResponse

from runs import limits, selectors, services, storage
from runs.errors import InvalidInput, LengthRequired, NotFound
from runs.mlflow.door import (
    ARTIFACTS_PREFIX,
    Door,
    MlflowError,
    json_response,
    load_run,
)
from runs.models import (
    Run,
)

# --- artifacts ----------------------------------------------------------------------------------


def list_files(run: Run, folder: str) -> list[dict]:
    """The entries right below `folder` of the run's tree: files with sizes, folders once."""
    prefix = folder.rstrip("/") + "/" if folder else ""
    entries: dict[str, dict] = {}
    for record in selectors.run_files(run=run, prefix=prefix)[: limits.LIST_MAX]:
        rest = record.path[len(prefix) :]
        head, slash, _ = rest.partition("/")
        if slash:
            entries.setdefault(head, {"path": head, "is_dir": True})
        else:
            entries[head] = {"path": head, "is_dir": False, "file_size": record.size}
    return [entries[k] for k in sorted(entries)]


def _artifact_target(door: Door, path: str, *, write: bool) -> tuple[Run, str]:
    """`runs/<run id>/<path in the run's tree>` → (run, checked path)."""
    kind, _, rest = path.strip("/").partition("/")
    run_id, _, tree_path = rest.partition("/")
    if kind != "runs" or not run_id:
        raise NotFound(f"No artifact at {path!r}.", field="path")
    run = load_run(door, run_id, write=write)
    if tree_path:
        tree_path = storage.check_path(tree_path)
    if write and not (tree_path + "/").startswith(ARTIFACTS_PREFIX + "/"):
        raise InvalidInput(
            f"path: MLflow artifacts are written under the run's {ARTIFACTS_PREFIX}/ folder.",
            field="path",
        )
    return run, tree_path


def artifacts(request, door: Door, path: str):
    if request.method == "GET" and not path:
        run, folder = _artifact_target(door, request.GET.get("path", ""), write=False)
        return json_response({"files": list_files(run, folder)})
    if request.method == "PUT":
        run, tree_path = _artifact_target(door, path, write=True)
        size = request.META.get("CONTENT_LENGTH") or ""
        if not (size.isascii() and size.isdecimal()):
            raise LengthRequired("body: send Content-Length.", field="body")
        services.run_file_write(run=run, path=tree_path, stream=request, size=int(size))
        return json_response({})
    if request.method == "DELETE":
        run, tree_path = _artifact_target(door, path, write=True)
        services.run_files_delete(run=run, path=tree_path)
        return json_response({})
    if request.method == "GET":
        run, tree_path = _artifact_target(door, path, write=False)
        storage.run_file_get(run=run, path=tree_path)
        return StreamingHttpResponse(
            storage.run_file_iter(run=run, path=tree_path), content_type="application/octet-stream"
        )
    raise MlflowError("ENDPOINT_NOT_FOUND", f"{request.method} is not served here.", 405)
