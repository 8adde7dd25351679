"""Browser tests: Playwright drives Debian's chromium against pytest-django's live server.

Never `playwright install` (it downloads a browser); the executable is the system one.
Screenshots go to test-artifacts/screenshots/ (git-ignored) for people to look at.
"""

import contextlib
import os
import shutil
import time
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from tests.conftest import PASSWORD  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    }


@pytest.fixture
def page(page, transactional_db):
    """pytest-playwright's page, torn down before the test's database is flushed (it depends
    on it) and only once the requests the page started are answered: a chart's fetch still
    running in the live server during the flush held a lock the flush's TRUNCATE needed, and
    PostgreSQL failed the flush as a deadlock (and the next test's setup with it). Streams
    (a live log's event source) never end and are not waited for; an idle page costs nothing."""
    pending = set()

    def started(request):
        if request.resource_type not in ("eventsource", "websocket"):
            pending.add(request)

    def ended(request):  # Playwright takes Python functions, not builtin methods
        pending.discard(request)

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    yield page
    deadline = time.monotonic() + 5
    with contextlib.suppress(Exception):  # a page already closed: nothing is in flight
        while pending and time.monotonic() < deadline:
            page.wait_for_timeout(50)  # Playwright delivers the pages' events meanwhile


@pytest.fixture
def sign_in(live_server):
    """sign_in(page, member) signs the member in through the real login form."""

    def sign(page, member, next_path: str = "/"):
        page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
        page.fill("input[name=username]", member.user.username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        return page

    return sign


@pytest.fixture
def screenshot():
    """screenshot(page, "name") saves a full-page PNG for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shoot
