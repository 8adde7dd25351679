"""Where the SDK and the CLI find the server, the token and the workspace.

Precedence, first wins: explicit arguments, environment (``RUNSTUDIO_URL``,
``RUNSTUDIO_TOKEN``, ``RUNSTUDIO_WORKSPACE``), the folder config
(``.runstudio/config.json`` in the current folder or a parent, written by
``runstudio folder attach``), then the credentials file written by ``runstudio login``
(``$RUNSTUDIO_HOME/credentials.json``, default ``~/.runstudio``, mode 600)::

    {"default_url": "http://127.0.0.1:8000", "tokens": {"http://127.0.0.1:8000": "rs_..."}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_DIR = ".runstudio"
CONFIG_FILE = "config.json"
CREDENTIALS_FILE = "credentials.json"


class ConfigError(Exception):
    """The SDK cannot tell which server, token or workspace to use."""


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    workspace: str | None


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    if "://" not in url:
        url = "http://" + url
    return url


def runstudio_home() -> Path:
    return Path(os.environ.get("RUNSTUDIO_HOME") or Path.home() / ".runstudio")


def credentials_path() -> Path:
    return runstudio_home() / CREDENTIALS_FILE


def load_credentials() -> dict[str, Any]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"default_url": None, "tokens": {}}
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot read {path}: {e}; delete it and sign in again with `runstudio login`"
        ) from e
    if not isinstance(data, dict):
        data = {}
    tokens = data.get("tokens")
    return {
        "default_url": data.get("default_url"),
        "tokens": tokens if isinstance(tokens, dict) else {},
    }


def save_token(url: str, token: str, *, make_default: bool = True) -> Path:
    """Store ``token`` for ``url`` in the credentials file (mode 600)."""
    url = normalize_url(url)
    data = load_credentials()
    data["tokens"][url] = token
    if make_default:
        data["default_url"] = url
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def find_folder_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``.runstudio/config.json`` in ``start`` (default: cwd) or its parents."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_DIR / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def read_folder_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a folder config; ``path`` may be the file, a folder holding ``.runstudio/``
    or a folder holding ``config.json`` directly."""
    p = Path(path)
    if p.is_dir():
        for candidate in (p / CONFIG_DIR / CONFIG_FILE, p / CONFIG_FILE):
            if candidate.is_file():
                p = candidate
                break
        else:
            found = find_folder_config(p)
            if found is None:
                raise ConfigError(
                    f"no {CONFIG_DIR}/{CONFIG_FILE} in {path} or its parents; "
                    "run `runstudio folder attach -w WORKSPACE` there first"
                )
            p = found
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot read {p}: {e}; rewrite it with `runstudio folder attach -w WORKSPACE`"
        ) from e
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p} must hold a JSON object; rewrite it with `runstudio folder attach -w WORKSPACE`"
        )
    return data


def write_folder_config(folder: str | os.PathLike[str], *, url: str, workspace: str) -> Path:
    path = Path(folder) / CONFIG_DIR / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": normalize_url(url), "workspace": workspace}, indent=2))
    return path


def resolve(
    *,
    url: str | None = None,
    token: str | None = None,
    workspace: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
    require_workspace: bool = False,
) -> Settings:
    """Combine arguments, environment, folder config and stored credentials."""
    folder: dict[str, Any] = {}
    if config_path is not None:
        folder = read_folder_config(config_path)
    else:
        found = find_folder_config()
        if found is not None:
            folder = read_folder_config(found)
    creds = load_credentials()

    chosen_url = (
        url or os.environ.get("RUNSTUDIO_URL") or folder.get("url") or creds.get("default_url")
    )
    if not chosen_url:
        raise ConfigError(
            "no Runstudio server configured: pass url=, set RUNSTUDIO_URL, "
            "or run `runstudio login --url URL --username NAME`"
        )
    chosen_url = normalize_url(chosen_url)
    chosen_token = token or os.environ.get("RUNSTUDIO_TOKEN") or creds["tokens"].get(chosen_url)
    chosen_ws = workspace or os.environ.get("RUNSTUDIO_WORKSPACE") or folder.get("workspace")
    if require_workspace and not chosen_ws:
        raise ConfigError(
            "no workspace given: pass -w/--workspace (or workspace=), set RUNSTUDIO_WORKSPACE, "
            "or run `runstudio folder attach -w WORKSPACE` in this folder"
        )
    return Settings(url=chosen_url, token=chosen_token, workspace=chosen_ws)
