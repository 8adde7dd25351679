"""The ``runstudio`` command line (``az ml``-shaped): JSON out, ``--query`` JMESPath.

Exit status: 0 on success, 1 when the server or the configuration says no (the message
goes to stderr), 2 for usage errors (argparse's convention, also a bad ``--query``).
Imports no Django: ``serve`` runs Django and gunicorn in child processes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jmespath
import jmespath.exceptions

from runs.sdk import config
from runs.sdk.client import Client, RunstudioError, quote_segment
from runs.sdk.experiment import property_params

Handler = Callable[[argparse.Namespace], Any]

RUN_COLUMNS = ["run_id", "experiment", "display_name", "status", "run_type", "created_at"]
WORKSPACE_COLUMNS = ["name", "role", "created_at"]
EXPERIMENT_COLUMNS = ["name", "run_count", "last_run_at", "created_at"]


class UsageError(Exception):
    """Bad command-line input that argparse could not catch (exit status 2)."""


# --- helpers ---------------------------------------------------------------------------


def _settings(args: argparse.Namespace, *, workspace: bool = False) -> config.Settings:
    return config.resolve(
        url=getattr(args, "url", None),
        token=getattr(args, "token", None),
        workspace=getattr(args, "workspace", None),
        require_workspace=workspace,
    )


def _client(args: argparse.Namespace) -> Client:
    settings = _settings(args)
    if not settings.token:
        raise config.ConfigError(
            f"no token for {settings.url}: run `runstudio login --url {settings.url} "
            "--username NAME` or set RUNSTUDIO_TOKEN"
        )
    return Client(settings.url, settings.token)


def _workspace(args: argparse.Namespace) -> str:
    ws = _settings(args, workspace=True).workspace
    assert ws is not None
    return ws


def _key_value(text: str) -> tuple[str, str | None]:
    """``k=v`` → (k, v); a bare ``k`` → (k, None)."""
    key, sep, value = text.partition("=")
    if not key:
        raise UsageError(f"expected KEY=VALUE or KEY (e.g. quality=good), got {text!r}")
    return key, value if sep else None


# --- output ----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render_table(data: Any, columns: Sequence[str] | None = None) -> str:
    """A plain text table: a list of objects as rows, an object as key/value lines."""
    if isinstance(data, dict):
        rows = [[str(k), _cell(v)] for k, v in data.items()]
        header = ["Key", "Value"]
    elif isinstance(data, list) and all(isinstance(d, dict) for d in data):
        if not data:
            return ""
        if columns is None or not any(c in data[0] for c in columns):
            columns = [k for k, v in data[0].items() if not isinstance(v, (dict, list))][:8]
        else:
            columns = [c for c in columns if any(c in d for d in data)]
        header = [c.replace("_", " ").title() for c in columns]
        rows = [[_cell(d.get(c)) for c in columns] for d in data]
    elif isinstance(data, list):
        return "\n".join(_cell(d) for d in data)
    else:
        return _cell(data)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _emit(args: argparse.Namespace, result: Any, columns: Sequence[str] | None = None) -> None:
    if result is None:
        return
    query = getattr(args, "query", None)
    if query:
        try:
            result = jmespath.search(query, result)
        except jmespath.exceptions.JMESPathError as e:
            raise UsageError(
                f"invalid --query {query!r}: {e} (JMESPath; https://jmespath.org/tutorial.html)"
            ) from e
        columns = None if query else columns
    if getattr(args, "output", "json") == "table":
        text = render_table(result, columns)
        if text:
            print(text)
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))


# --- commands --------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> Any:
    url = args.url or os.environ.get("RUNSTUDIO_URL") or config.load_credentials()["default_url"]
    if not url:
        raise UsageError("login needs --url (e.g. --url http://127.0.0.1:8000)")
    url = config.normalize_url(url)
    password = args.password or os.environ.get("RUNSTUDIO_PASSWORD")
    if args.password_stdin:  # as `runstudio user create --password-stdin`: a script's way
        password = sys.stdin.readline().rstrip("\n")
    if password is None:
        password = getpass.getpass(f"Password for {args.username} at {url}: ")
    name = args.token_name or f"runstudio-cli@{socket.gethostname()}"
    answer = Client(url, None).post(
        "/auth/token", {"username": args.username, "password": password, "name": name}
    )
    path = config.save_token(url, answer["token"])
    return {
        "url": url,
        "username": args.username,
        "token_name": answer.get("name", name),
        "token_prefix": answer.get("prefix"),
        "credentials": str(path),
    }


def cmd_workspace_create(args: argparse.Namespace) -> Any:
    return _client(args).post("/workspaces", {"name": args.name})


def cmd_workspace_list(args: argparse.Namespace) -> Any:
    return list(_client(args).paginate("/workspaces"))


def cmd_workspace_show(args: argparse.Namespace) -> Any:
    return _client(args).get(f"/workspaces/{quote_segment(_workspace(args))}")


def cmd_workspace_member_add(args: argparse.Namespace) -> Any:
    """Adds someone you share a workspace with, or prints an invitation key for anyone else
    (pass it on; they run `runstudio workspace join KEY`)."""
    path = f"/workspaces/{quote_segment(_workspace(args))}/members"
    return _client(args).post(path, {"username": args.username, "role": args.role})


def cmd_workspace_join(args: argparse.Namespace) -> Any:
    return _client(args).post("/invitations/accept", {"invitation": args.invitation})


def cmd_folder_attach(args: argparse.Namespace) -> Any:
    settings = _settings(args)
    client = _client(args)
    details = client.get(f"/workspaces/{quote_segment(args.workspace)}")
    path = config.write_folder_config(args.path, url=settings.url, workspace=details["name"])
    return {"url": settings.url, "workspace": details["name"], "config": str(path)}


def cmd_experiment_list(args: argparse.Namespace) -> Any:
    ws = _workspace(args)
    return list(_client(args).paginate(f"/workspaces/{quote_segment(ws)}/experiments"))


# A query string longer than this goes in a POST body (…/runs/search): the server's request
# line is limited (gunicorn's default is 4094 bytes) and a longer one never reaches the studio.
SEARCH_URL_MAX = 2_000


def _search(client: Client, path: str, params: list[tuple[str, Any]]) -> Any:
    """The run list's pages: GET with the parameters in the URL, or POST search when long."""
    if len(urlencode(params)) <= SEARCH_URL_MAX:
        yield from client.paginate(path, params)
        return
    body: dict[str, list[str]] = {}  # every parameter as a list: the server takes either
    for key, value in params:
        body.setdefault(key, []).append(str(value))
    cursor = None
    while True:
        page = client.post(f"{path}/search", {**body, "limit": 1000, "cursor": cursor or ""})
        yield from page.get("results", [])
        cursor = page.get("next_cursor")
        if not cursor:
            return


def cmd_run_list(args: argparse.Namespace) -> Any:
    if args.query and args.positional_query:
        raise UsageError("give the JMESPath query once: --query QUERY or as the last argument")
    args.query = args.query or args.positional_query
    ws = _workspace(args)
    params: list[tuple[str, Any]] = []
    if args.experiment_name:
        _experiment(args, ws, args.experiment_name)  # an unknown name is an error, not []
        params.append(("experiment", args.experiment_name))
    params += [("status", s) for s in args.status or []]
    params += [("tag", t) for t in args.tag or []]
    params += property_params(dict(_key_value(p) for p in args.property or []))  # type: ignore[arg-type]
    if args.filter:
        params.append(("q", args.filter))
    if args.parent:
        params.append(("parent", args.parent))
    elif not args.include_children:
        params.append(("top_level", 1))
    runs = []
    for run in _search(_client(args), f"/workspaces/{quote_segment(ws)}/runs", params):
        runs.append(run)
        if args.last and len(runs) >= args.last:
            break
    return runs


def cmd_run_show(args: argparse.Namespace) -> Any:
    return _client(args).get(f"/runs/{quote_segment(args.run_id)}")


def cmd_run_update(args: argparse.Namespace) -> Any:
    client = _client(args)
    path = f"/runs/{quote_segment(args.run_id)}"
    add = dict(_key_value(t) for t in args.add_tag or [])
    body: dict[str, Any] = {}
    if add:
        body["set"] = add
    if args.remove_tag:
        body["remove"] = args.remove_tag
    fields = {
        k: v
        for k, v in (("display_name", args.display_name), ("description", args.description))
        if v is not None
    }
    if not body and not fields:
        raise UsageError(
            "run update needs --add-tag, --remove-tag, --display-name or --description"
        )
    if body:
        client.patch(f"{path}/tags", body)
    if fields:
        return client.patch(path, fields)
    return client.get(path)


def cmd_run_cancel(args: argparse.Namespace) -> Any:
    client = _client(args)
    # The server decides: a script a worker is executing is asked to stop (CancelRequested).
    return client.post(f"/runs/{quote_segment(args.run_id)}/cancel", {})


def _sdk_run(args: argparse.Namespace) -> Any:
    """The run ``-r`` names, as an SDK ``Run`` (its workspace comes from its details)."""
    from runs.sdk.run import Run
    from runs.sdk.workspace import Workspace

    client = _client(args)
    details = client.get(f"/runs/{quote_segment(args.run_id)}")
    return Run._from_details(Workspace(details["workspace"], _client=client), details)


def _monitor(run: Any) -> Any:
    """Stream the driver log until the run ends; a Failed or Canceled run exits 1."""
    details = run.wait_for_completion(show_output=True, raise_on_error=False)
    if details.get("status") != "Completed":
        raise RunstudioError(
            f"run {run.id} ended {details.get('status')}; `runstudio run show -r {run.id}` "
            "shows its error"
        )
    return None


def cmd_run_submit_script(args: argparse.Namespace) -> Any:
    from runs.sdk.experiment import Experiment
    from runs.sdk.submit import ScriptRunConfig
    from runs.sdk.workspace import Workspace

    workspace = Workspace(_workspace(args), _client=_client(args))
    config = ScriptRunConfig(
        source_directory=args.source_directory,
        script=args.script,
        arguments=list(args.arguments or []),
        compute_target=args.compute_target,
        display_name=args.display_name,
        tags=dict(_key_value(t) for t in args.tag or []) or None,
    )
    run = Experiment(workspace, args.experiment_name).submit(config)
    if args.stream:
        return _monitor(run)
    return run._details


def cmd_run_monitor_logs(args: argparse.Namespace) -> Any:
    return _monitor(_sdk_run(args))


def _experiment(args: argparse.Namespace, ws: str, name: str) -> Any:
    """The experiment's details; an unknown name is an error that names it and the option."""
    from runs.sdk.client import NotFound

    try:
        return _client(args).get(
            f"/workspaces/{quote_segment(ws)}/experiments/{quote_segment(name)}"
        )
    except NotFound:
        raise RunstudioError(
            f"--experiment-name: workspace {ws!r} has no experiment named {name!r}; "
            f"`runstudio experiment list -w {ws}` shows the ones it has."
        ) from None


def cmd_experiment_show(args: argparse.Namespace) -> Any:
    return _experiment(args, _workspace(args), args.experiment_name)


def cmd_run_metrics(args: argparse.Namespace) -> Any:
    """Metrics by name in logged order: ``Run.get_metrics()``'s shape."""
    params = [("name", n) for n in args.name or []]
    path = f"/runs/{quote_segment(args.run_id)}/metrics/values"
    return _client(args).get(path, params=params)["metrics"]


def cmd_run_files(args: argparse.Namespace) -> Any:
    params = {"prefix": args.prefix} if args.prefix else None
    return _client(args).get(f"/runs/{quote_segment(args.run_id)}/files", params=params)["files"]


def cmd_run_download(args: argparse.Namespace) -> Any:
    """Download the run's files under ``--prefix`` into ``-d`` keeping their tree."""
    from pathlib import Path

    run = _sdk_run(args)
    out = Path(args.output_directory).resolve()
    written = []
    for f in run._files(args.prefix):
        target = (out / f["path"]).resolve()
        if not target.is_relative_to(out):  # the server checks paths; so do we
            raise RunstudioError(f"refusing to write {f['path']!r} outside {out}")
        written.append(run.download_file(f["path"], target))
    if not written:
        raise RunstudioError(
            f"run {run.id} has no files"
            + (f" under --prefix {args.prefix!r}" if args.prefix else "")
            + f"; `runstudio run files -r {run.id}` lists what it has."
        )
    return {"run_id": run.id, "directory": str(out), "files": written}


def cmd_run_tag(args: argparse.Namespace) -> Any:
    tags = dict(_key_value(t) for t in args.tags)
    path = f"/runs/{quote_segment(args.run_id)}/tags"
    return _client(args).patch(path, {"set": tags})["tags"]


def cmd_run_untag(args: argparse.Namespace) -> Any:
    path = f"/runs/{quote_segment(args.run_id)}/tags"
    return _client(args).patch(path, {"remove": list(args.keys)})["tags"]


def cmd_run_manage(args: argparse.Namespace) -> Any:
    """archive / restore / delete one or more runs (``-r`` repeated) in one request: all of
    them or none. The workspace is ``-w`` (or the configured one), else the first run's."""
    if args.manage_action == "delete" and not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "run delete removes the runs, their child runs and their files for good; "
                "add --yes to confirm"
            )
        answer = input(f"Delete {len(args.run_ids)} run(s) and their files for good? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("run delete: not confirmed; nothing was deleted")
    client = _client(args)
    ws = _settings(args).workspace
    if not ws:
        ws = client.get(f"/runs/{quote_segment(args.run_ids[0])}")["workspace"]
    path = f"/workspaces/{quote_segment(ws)}/runs/manage"
    return client.post(path, {"action": args.manage_action, "runs": args.run_ids})


def cmd_sync(args: argparse.Namespace) -> Any:
    """Send what scripts spooled while the server was unreachable (runs/sdk/spool.py)."""
    from pathlib import Path

    from runs.sdk import spool

    root = Path(args.path) if args.path else spool.spool_root()
    url = config.normalize_url(args.url) if args.url else None
    results = spool.sync(root, url=url, run_id=args.run_id)
    if not results:
        print(f"runstudio: nothing to send in {root}.", file=sys.stderr)
    for r in results:
        for warning in r.warnings:
            print(f"runstudio: warning: run {r.run_id}: {warning}", file=sys.stderr)
    kept = [r for r in results if not r.done]
    _emit(args, [r.as_json() for r in results])
    if kept:
        raise RunstudioError(
            f"{len(kept)} of {len(results)} spooled run(s) are still in {root}: {kept[0].error}"
        )
    return None


def cmd_user_create(args: argparse.Namespace) -> Any:
    """Runs Django's side (`python -m django runstudio_user`): the CLI imports no Django."""
    import importlib.util

    if importlib.util.find_spec("django") is None or importlib.util.find_spec("studio") is None:
        raise RunstudioError(
            "`runstudio user create` writes to the server's database, so it runs where the "
            "server is installed (`pip install runstudio` with Django): run it there, with the "
            "RUNSTUDIO_DATA_DIR (or DATABASE_URL) the server uses."
        )
    command = [sys.executable, "-m", "django", "runstudio_user", "create"]
    command += ["--username", args.username]
    if args.email:
        command += ["--email", args.email]
    if args.superuser:
        command.append("--superuser")
    if args.password_stdin:
        command.append("--password-stdin")
    done = subprocess.run(command, env=_django_env(remembered=True), capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise RunstudioError(lines[-1].removeprefix("CommandError: "))
    return json.loads(done.stdout)


def cmd_compute_list(args: argparse.Namespace) -> Any:
    ws = _workspace(args)
    return _client(args).get(f"/workspaces/{quote_segment(ws)}/compute")["results"]


def cmd_compute_worker_key(args: argparse.Namespace) -> Any:
    """A new worker key for the target (owners only); the old one stops admitting workers."""
    ws = _workspace(args)
    path = f"/workspaces/{quote_segment(ws)}/compute/{quote_segment(args.compute_target)}"
    return _client(args).post(f"{path}/worker-key", {})


def _django_env(*, remembered: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    if remembered and not env.get("RUNSTUDIO_DATA_DIR") and not env.get("DATABASE_URL"):
        # From another folder than the one `runstudio serve` ran in (whose ./runstudio-data is
        # the default), use the data directory the last local `serve` recorded.
        here = Path("runstudio-data")
        if not here.is_dir() and (last := _last_served_data_dir()) is not None:
            env["RUNSTUDIO_DATA_DIR"] = last
    return env


def _served_record() -> Path:
    return config.runstudio_home() / "last-serve.json"


def _last_served_data_dir() -> str | None:
    try:
        data_dir = json.loads(_served_record().read_text())["data_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data_dir if isinstance(data_dir, str) and Path(data_dir).is_dir() else None


def _record_served_data_dir(env: dict[str, str]) -> None:
    """Remembers an embedded server's data directory (never a DATABASE_URL: it holds a password)
    so `runstudio user create` finds it from any folder."""
    if env.get("DATABASE_URL"):
        return
    data_dir = str(Path(env.get("RUNSTUDIO_DATA_DIR") or "runstudio-data").resolve())
    try:
        _served_record().parent.mkdir(parents=True, exist_ok=True)
        _served_record().write_text(json.dumps({"data_dir": data_dir}) + "\n")
    except OSError:
        pass  # only a convenience for later commands


def _worker_command(target: str, *, batch: bool = False, workspace: str | None = None) -> list[str]:
    """A worker for one workspace's target, or (no workspace) for one of the server's own
    queues, `local` or the alerts queue. The worker key travels in RUNSTUDIO_WORKER_KEY, not
    on the command line, where `ps` would show it."""
    command = [sys.executable, "-m", "django", "runstudio_worker"]
    if workspace:
        command += ["-w", workspace, "-c", target]
    else:
        command += ["--queue-name", target]
    command += ["--no-reload", "--interval", "0.5", "--no-startup-delay"]
    return command + (["--batch"] if batch else [])


def _stop(processes: Sequence[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM (a worker then finishes its current run), a second SIGTERM after a second
    (a worker then stops the run's script and marks the run Failed), SIGKILL after ``grace``."""
    import signal
    import time

    for sig_round in (1, 2):
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + (1.0 if sig_round == 1 else grace)
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.05)
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait()


def _supervise(processes: list[subprocess.Popen]) -> int:
    """Wait until one process exits or a signal arrives; then stop them all."""
    import signal
    import time

    stopping: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.2)
    finally:
        _stop(processes)
        for s, handler in previous.items():
            signal.signal(s, handler)
    codes = [p.returncode for p in processes]
    return 0 if stopping else next((c for c in codes if c), 0)


def cmd_worker(args: argparse.Namespace) -> Any:
    env = _django_env()
    if args.server_url:
        env["RUNSTUDIO_SERVER_URL"] = args.server_url
    if args.key:
        env["RUNSTUDIO_WORKER_KEY"] = args.key
    command = _worker_command(args.compute_target, batch=args.batch, workspace=args.workspace)
    processes = [subprocess.Popen(command, env=env) for _ in range(args.processes)]
    code = _supervise(processes)
    if code:
        raise RunstudioError(f"a worker exited with status {code}")
    return None


def cmd_serve(args: argparse.Namespace) -> Any:
    """Starts gunicorn, then becomes `python -m django runstudio_serve` (exec: same process
    id, so signals and the terminal reach the server itself, and gunicorn stays its child).

    gunicorn's workers load Django while that command checks migrations and static files, and
    wait for it at a gate (runs/gunicorn_conf.py): the two slow halves of a start overlap. The
    command migrates only when a migration is unapplied, builds static files only when they
    changed, and runs the local and alerts workers as threads
    (runs/management/commands/runstudio_serve.py)."""
    import signal

    from runs import gunicorn_conf  # imports no Django
    from runs.child_processes import signal_on_parent_death  # nor this

    env = _django_env()
    _record_served_data_dir(env)
    # Serve the collected, hashed and compressed static files (see STORAGES in settings).
    env["RUNSTUDIO_STATIC_FINDERS"] = "0"
    # The scripts the local workers start call this server back.
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    env.setdefault("RUNSTUDIO_SERVER_URL", f"http://{shown_host}:{args.port}")
    # One web process on SQLite (one writer at a time anyway; its threads serve concurrent
    # requests), two on PostgreSQL.
    workers = args.workers or (2 if env.get("DATABASE_URL") else 1)
    gate_read, gate_write = os.pipe()
    web = subprocess.Popen(
        gunicorn_conf.command(host=args.host, port=args.port, workers=workers, threads=8),
        env={**env, gunicorn_conf.GATE_ENV: str(gate_read)},
        pass_fds=(gate_read,),
        # If serve is killed outright, gunicorn stops too (graceful SIGTERM) instead of
        # holding the port.
        preexec_fn=signal_on_parent_death(signal.SIGTERM),  # noqa: PLW1509 - prctl only
    )
    os.close(gate_read)
    os.set_inheritable(gate_write, True)
    command = [sys.executable, "-m", "django", "runstudio_serve"]
    command += ["--host", args.host, "--port", str(args.port)]
    command += ["--local-workers", str(args.local_workers)]
    command += ["--gunicorn-pid", str(web.pid), "--gate-fd", str(gate_write)]
    if args.demo:
        command.append("--demo")
    sys.stdout.flush()
    os.execve(sys.executable, command, env)


# --- errors a person can act on ------------------------------------------------------------

# The server names its parameters (`q`, `experiment`); the person typed options.
OPTION_FOR_FIELD = {
    "q": "--filter",
    "experiment": "--experiment-name",
    "status": "--status",
    "tag": "--tag",
    "property": "--property",
    "parent": "--parent",
    "limit": "--last",
    "prefix": "--prefix",
    "name": "--name",
    "username": "--username",
    "compute_target": "--compute-target",
    "display_name": "--display-name",
    "description": "--description",
}

# What to do next, by kind of refusal, when the server's message does not say already.
NEXT_STEP = {
    "AuthError": "sign in again: `runstudio login --url {url} --username NAME`",
    "PermissionDenied": "ask an owner of the workspace for the contributor role",
    "NotFound": "check the name or id (`runstudio run list`, `runstudio experiment list`, "
    "`runstudio workspace list` show what you can see)",
}


def for_user(args: argparse.Namespace, error: Exception) -> str:
    """The error as one line that names the option the user typed and what to do next."""
    message = str(error).strip()
    field = getattr(error, "field", None)
    if field:
        base = field.split("[")[0].split(".")[0]
        option = OPTION_FOR_FIELD.get(base)
        if option:
            if message.startswith(f"{field}:") or message.startswith(f"{base}:"):
                message = option + message[message.index(":") :]
            elif option not in message:
                message = f"{option}: {message}"
    hint = NEXT_STEP.get(type(error).__name__)
    if hint and "`runstudio" not in message:
        try:
            url = config.resolve(url=getattr(args, "url", None)).url
        except config.ConfigError:
            url = "URL"
        message = f"{message.rstrip('.')}. Next: {hint.format(url=url)}."
    return message


# --- parser ----------------------------------------------------------------------------


def _common(workspace: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-o", "--output", choices=("json", "table"), default="json")
    p.add_argument("--query", help="JMESPath query applied to the JSON result")
    p.add_argument("--url", help="server URL (default: folder config, then `login`)")
    if workspace:
        p.add_argument("-w", "--workspace", "--workspace-name", dest="workspace")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runstudio", description="Runstudio: self-hosted ML run history."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plain, with_ws = _common(), _common(workspace=True)

    login = commands.add_parser("login", parents=[plain], help="get and store an API token")
    login.add_argument("-u", "--username", required=True)
    login.add_argument("-p", "--password", help="default: $RUNSTUDIO_PASSWORD, else a prompt")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--token-name", help="label of the token on the server")
    login.set_defaults(func=cmd_login)

    ws = commands.add_parser("workspace", help="workspaces").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = ws.add_parser("create", parents=[plain], help="create a workspace (you own it)")
    p.add_argument("name")
    p.set_defaults(func=cmd_workspace_create, columns=WORKSPACE_COLUMNS)
    p = ws.add_parser("list", parents=[plain], help="workspaces you belong to")
    p.set_defaults(func=cmd_workspace_list, columns=WORKSPACE_COLUMNS)
    p = ws.add_parser("show", parents=[with_ws], help="one workspace")
    p.set_defaults(func=cmd_workspace_show, columns=WORKSPACE_COLUMNS)
    p = ws.add_parser(
        "member-add",
        parents=[with_ws],
        help="add a member (owners); someone you share no workspace with gets an invitation",
    )
    p.add_argument("username")
    p.add_argument("--role", choices=["reader", "contributor", "owner"], default="reader")
    p.set_defaults(func=cmd_workspace_member_add)
    p = ws.add_parser("join", parents=[plain], help="accept an invitation key")
    p.add_argument("invitation")
    p.set_defaults(func=cmd_workspace_join, columns=WORKSPACE_COLUMNS)

    folder = commands.add_parser("folder", help="folder configuration").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = folder.add_parser(
        "attach", parents=[plain], help="write .runstudio/config.json for Workspace.from_config()"
    )
    p.add_argument("-w", "--workspace", "--workspace-name", dest="workspace", required=True)
    p.add_argument("--path", default=".", help="folder to attach (default: current)")
    p.set_defaults(func=cmd_folder_attach)

    exp = commands.add_parser("experiment", help="experiments").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = exp.add_parser("list", parents=[with_ws], help="experiments of the workspace")
    p.set_defaults(func=cmd_experiment_list, columns=EXPERIMENT_COLUMNS)

    run = commands.add_parser("run", help="runs").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = run.add_parser("list", parents=[with_ws], help="runs, newest first")
    p.add_argument("-e", "--experiment-name", help="only this experiment's runs")
    p.add_argument("--status", action="append", help="repeat for any of several")
    p.add_argument("--tag", action="append", help="KEY or KEY=VALUE; repeat for all of them")
    p.add_argument("--property", action="append", help="KEY=VALUE; repeat for all of them")
    p.add_argument("--parent", help="children of this run id")
    p.add_argument("--include-children", action="store_true")
    p.add_argument(
        "--filter",
        metavar="SEARCH",
        help="the studio's search language, e.g. \"metrics.loss < 0.5 OR tags.quality = 'good'\"",
    )
    p.add_argument("--last", type=int, help="at most this many runs")
    p.add_argument("positional_query", nargs="?", metavar="QUERY", help="JMESPath, like --query")
    p.set_defaults(func=cmd_run_list, columns=RUN_COLUMNS)

    def run_parser(action: str, help_text: str) -> argparse.ArgumentParser:
        p = run.add_parser(action, parents=[with_ws], help=help_text)
        p.add_argument("-r", "--run", "--run-id", dest="run_id", required=True)
        p.add_argument("-e", "--experiment-name", help="accepted for az compatibility")
        return p

    p = run_parser("show", "one run's details")
    p.set_defaults(func=cmd_run_show)
    p = run_parser("update", "edit tags, display name, description")
    p.add_argument("--add-tag", action="append", help="KEY=VALUE or KEY (a bare tag)")
    p.add_argument("--remove-tag", action="append", metavar="KEY")
    p.add_argument("--display-name")
    p.add_argument("--description")
    p.set_defaults(func=cmd_run_update)
    p = run_parser("cancel", "cancel a run")
    p.set_defaults(func=cmd_run_cancel)

    p = run.add_parser("submit-script", parents=[with_ws], help="submit a script to a target")
    p.add_argument("-e", "--experiment-name", required=True)
    p.add_argument("-c", "--compute-target", "--target", default="local")
    p.add_argument("-d", "--source-directory", default=".", help="folder to snapshot")
    p.add_argument("--display-name")
    p.add_argument("--tag", action="append", help="KEY=VALUE or KEY")
    p.add_argument("--stream", action="store_true", help="stream the log until the run ends")
    p.add_argument("script", help="path inside the source directory")
    p.add_argument("arguments", nargs="*", help="the script's arguments (after --)")
    p.set_defaults(func=cmd_run_submit_script)
    p = run_parser("monitor-logs", "stream a run's driver log until it ends")
    p.set_defaults(func=cmd_run_monitor_logs)
    p = run_parser("metrics", "a run's metrics by name, in logged order (get_metrics())")
    p.add_argument("--name", action="append", help="only this metric; repeat for several")
    p.set_defaults(func=cmd_run_metrics)
    p = run_parser("files", "a run's files")
    p.add_argument("--prefix", help="only files under this folder, e.g. logs/")
    p.set_defaults(func=cmd_run_files, columns=["path", "size", "updated_at"])
    for action, prefix, help_text in (
        ("download", None, "download a run's files, keeping their tree"),
        ("download-logs", "logs/", "download a run's logs/ (az ml's name)"),
    ):
        p = run_parser(action, help_text)
        p.add_argument("--prefix", default=prefix, help=f"only files under it (default: {prefix})")
        p.add_argument(
            "-d", "--output-directory", "--output-dir", default=".", help="default: current"
        )
        p.set_defaults(func=cmd_run_download)
    p = run_parser("tag", "set tags: KEY=VALUE, or KEY for a bare tag")
    p.add_argument("tags", nargs="+", metavar="TAG")
    p.set_defaults(func=cmd_run_tag)
    p = run_parser("untag", "remove tags")
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(func=cmd_run_untag)
    for action, help_text in (
        ("archive", "archive runs and their child runs (hidden from lists until restored)"),
        ("restore", "bring archived runs back"),
        ("delete", "delete runs, their child runs and their files for good (owners)"),
    ):
        p = run.add_parser(action, parents=[with_ws], help=help_text)
        p.add_argument(
            "-r",
            "--run",
            "--run-id",
            dest="run_ids",
            action="append",
            required=True,
            help="repeat for several runs",
        )
        if action == "delete":
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.set_defaults(func=cmd_run_manage, manage_action=action)

    p = exp.add_parser("show", parents=[with_ws], help="one experiment")
    p.add_argument("-e", "--experiment-name", "--name", dest="experiment_name", required=True)
    p.set_defaults(func=cmd_experiment_show, columns=EXPERIMENT_COLUMNS)

    p = commands.add_parser(
        "sync", parents=[plain], help="send what scripts spooled while the server was down"
    )
    p.add_argument("path", nargs="?", help="a spool folder (default: .runstudio/spool here)")
    p.add_argument("-r", "--run", "--run-id", dest="run_id", help="only this run")
    p.set_defaults(func=cmd_sync)

    user = commands.add_parser("user", help="user accounts (on the server)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = user.add_parser("create", help="create a user (writes to the server's database)")
    p.add_argument("-u", "--username", required=True)
    p.add_argument("--email", default="")
    p.add_argument("--superuser", action="store_true", help="also staff (the admin site)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_create)

    compute = commands.add_parser("compute", help="compute targets").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = compute.add_parser("list", parents=[with_ws], help="targets with their workers")
    p.set_defaults(func=cmd_compute_list, columns=["name", "capacity", "active_runs", "isolated"])
    p = compute.add_parser(
        "worker-key",
        parents=[with_ws],
        help="make a target a new worker key (owners; shown once, replaces the old one)",
    )
    p.add_argument("-c", "--compute-target", "--target", required=True)
    p.set_defaults(func=cmd_compute_worker_key)

    p = commands.add_parser("worker", help="run submitted scripts of a compute target")
    p.add_argument("-w", "--workspace", "--workspace-name", dest="workspace")
    p.add_argument("-c", "--compute-target", "--queue-name", default="local")
    p.add_argument(
        "--key",
        default=os.environ.get("RUNSTUDIO_WORKER_KEY"),
        help="the target's worker key (default: $RUNSTUDIO_WORKER_KEY); not for 'local'",
    )
    p.add_argument("--processes", type=int, default=1, help="worker processes (runs at once)")
    p.add_argument("--batch", action="store_true", help="drain the queue, then exit")
    p.add_argument("--server-url", help="URL scripts call back (RUNSTUDIO_SERVER_URL)")
    p.set_defaults(func=cmd_worker)

    p = commands.add_parser("serve", help="start the server (migrating the database if needed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers", type=int, default=0, help="web processes (default: 1 on SQLite, else 2)"
    )
    p.add_argument("--demo", action="store_true", help="seed demo data into an empty database")
    p.add_argument(
        "--local-workers",
        type=int,
        default=2,
        help="workers (threads of the server) for the 'local' target (0: none)",
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
        _emit(args, result, getattr(args, "columns", None))
    except UsageError as e:
        print(f"runstudio: error: {e}", file=sys.stderr)
        return 2
    except (RunstudioError, config.ConfigError) as e:
        print(f"runstudio: error: {for_user(args, e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `runstudio run list | head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
