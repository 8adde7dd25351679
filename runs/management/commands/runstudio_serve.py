"""`manage.py runstudio_serve`: what `runstudio serve` runs (the CLI execs it).

One process that prepares only what is needed (runs/serving.py), starts gunicorn as its child,
and runs the `local` workers and the alerts worker as threads of its own (django-tasks-db's
`Worker` loop, each with the liveness and reaper thread `runstudio_worker` has). It says
"serving at …" once gunicorn answers, with what to do next.

Stopping (SIGTERM or Ctrl+C): the workers take nothing new and gunicorn is told to stop; after a
second (or at a second signal) a script still executing is stopped and its run marked Failed —
as a second SIGTERM does to a `runstudio_worker` process — and whatever is left is killed
RUNSTUDIO_CANCEL_GRACE seconds later.
"""

import ctypes
import http.client
import os
import signal
import subprocess
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection
from django_tasks_db.management.commands.db_worker import Worker

from runs import gunicorn_conf, sandbox, selectors, services, serving
from runs.management.commands.runstudio_worker import _Liveness, worker_id_for

# How long the workers get to finish what they run after the first signal (seconds).
FIRST_GRACE = 1.0


class _WorkerThread(threading.Thread):
    """One django-tasks-db worker loop for one of the server's own queues."""

    def __init__(self, queue_name: str, *, isolated: bool) -> None:
        super().__init__(name=f"runstudio-worker-{queue_name}", daemon=True)
        self.queue_name, self.isolated = queue_name, isolated
        self.worker_id = worker_id_for(queue_name)
        self.worker = Worker(
            queue_names=[queue_name],
            interval=0.5,
            batch=False,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=self.worker_id,
            excluded_queue_names=[],
        )
        self.failure: BaseException | None = None

    def run(self) -> None:
        liveness = _Liveness(worker_id=self.worker_id, queue_name=self.queue_name)
        try:
            services.worker_register(
                worker_id=self.worker_id,
                queue_name=self.queue_name,
                workspace=None,
                isolated=self.isolated,
            )
            liveness.start()
            self._poll()
        except SystemExit:
            pass  # stopped while executing a run (interrupt); the run was marked Failed
        except BaseException as e:  # noqa: BLE001 - reported by the supervisor, which stops
            self.failure = e
        finally:
            liveness.stop.set()
            if liveness.is_alive():
                liveness.join(timeout=5)
            try:
                close_old_connections()
                services.worker_stop(worker_id=self.worker_id)
            except Exception:  # noqa: S110 - the reaper tells a stopped worker by its silence
                pass
            connection.close()

    def _poll(self) -> None:
        """The worker loop, resumed after a database error. A long write transaction elsewhere
        can hold SQLite's lock past the busy timeout (django-tasks-db only forgives that inside
        its claim, not when its transaction begins), and PostgreSQL can be briefly away: the
        server went down with its worker thread. A run already executing is not affected: the
        error comes from the poll between runs."""
        while True:
            try:
                self.worker.run()
                return
            except DatabaseError as e:
                if not self.worker.running:
                    return
                print(f"worker {self.queue_name}: {type(e).__name__}: {e}; retrying", flush=True)
                connection.close()
                time.sleep(1.0)

    def stop(self) -> None:
        self.worker.running = False

    def interrupt(self) -> None:
        """What a second SIGTERM does to a worker process, in this thread: SystemExit where it
        is, so the run it executes stops its script and is marked Failed (runs/execution.py)."""
        if self.is_alive() and self.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.ident), ctypes.py_object(SystemExit)
            )


class _Adopted:
    """gunicorn when `runstudio serve` started it before exec'ing this command: still this
    process's child, known by its pid; the few Popen methods the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(0.05)
        return self.returncode


def _process_age() -> float:
    """Seconds since this process started (before `exec`: when `runstudio serve` was typed)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _answers(host: str, port: int) -> int | None:
    """The HTTP status of the sign-in page, or None while nothing answers."""
    # Once gunicorn listens, a connection waits in its queue until a worker is ready; a short
    # timeout keeps Ctrl+C prompt (a signal does not interrupt the read) and the loop retries.
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/accounts/login/")
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


class Command(BaseCommand):
    help = "Serve the studio: migrate if needed, build static files if needed, gunicorn, workers."
    # `manage.py check` runs the system checks; here they would cost every start ~0.3 s.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=0, help="0: 1 on SQLite, else 2")
        parser.add_argument("--threads", type=int, default=8)
        parser.add_argument("--local-workers", type=int, default=2)
        parser.add_argument("--demo", action="store_true")
        # From `runstudio serve`, which starts gunicorn itself before exec'ing this command.
        parser.add_argument("--gunicorn-pid", type=int, help="adopt this gunicorn")
        parser.add_argument("--gate-fd", type=int, help="close it when ready to serve")

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def handle(self, *args, **options):
        host, port = options["host"], options["port"]
        gunicorn = _Adopted(options["gunicorn_pid"]) if options["gunicorn_pid"] else None
        try:
            self._prepare(demo=options["demo"])
            if options["gate_fd"] is not None:
                os.close(options["gate_fd"])  # the web workers go on (runs/gunicorn_conf.py)
            threads = self._worker_threads(options["local_workers"])
        except BaseException:
            if gunicorn is not None:
                gunicorn.kill()
                gunicorn.wait()
            raise
        if gunicorn is None:
            workers = options["workers"] or (
                1 if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") else 2
            )
            gunicorn = subprocess.Popen(
                gunicorn_conf.command(
                    host=host, port=port, workers=workers, threads=options["threads"]
                )
            )
        for thread in threads:
            thread.start()
        stopping = threading.Event()
        signals: list[int] = []

        def on_signal(signum, frame):
            signals.append(signum)
            stopping.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        failure = None
        try:
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
            url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
            while not stopping.is_set() and gunicorn.poll() is None:
                status = _answers(shown, port)
                if status is not None and status >= 500:
                    self.say(
                        f"Runstudio answers at {url}/ but its sign-in page fails (HTTP "
                        f"{status}): see the error above. Stop it with Ctrl+C."
                    )
                    break
                if status is not None:
                    self._banner(url, _process_age(), threads, demo=options["demo"])
                    break
                stopping.wait(0.05)
            while not stopping.is_set():
                if gunicorn.poll() is not None:
                    failure = f"gunicorn exited with status {gunicorn.returncode}"
                    break
                dead = next((t for t in threads if not t.is_alive()), None)
                if dead is not None:
                    failure = f"the worker for {dead.queue_name!r} stopped: {dead.failure!r}"
                    break
                stopping.wait(0.5)
        finally:
            self._stop(gunicorn, threads, signals)
            for s, handler in previous.items():
                signal.signal(s, handler)
        if failure:
            raise CommandError(failure)

    def _prepare(self, *, demo: bool) -> None:
        if warning := serving.secret_key_warning():
            self.say(warning)
        serving.migrate_if_pending(say=self.say)
        if warning := serving.bucket_warning() or serving.storage_mismatch():
            self.say(warning)
        if not settings.WHITENOISE_USE_FINDERS and serving.static_outdated():
            self.say("Building static files (once, and again only when they change)…")
            serving.static_build()
        if demo:
            call_command("seed_demo", stdout=self.stdout)
        connection.close()  # the threads and gunicorn open their own

    def _worker_threads(self, local_workers: int) -> list[_WorkerThread]:
        threads = []
        if local_workers > 0:
            self.say(sandbox.sandbox_banner())
            status = sandbox.sandbox_status()
            if not status.isolated and sandbox.sandbox_mode() == sandbox.REQUIRED:
                raise CommandError(
                    f"RUNSTUDIO_SANDBOX=required, but {status.reason}. Install it (scripts/"
                    "bootstrap as root does) and start again, or serve with --local-workers 0."
                )
            threads += [
                _WorkerThread(selectors.LOCAL, isolated=status.isolated)
                for _ in range(local_workers)
            ]
        # Alert notifications (e-mail, webhooks) run as tasks on their own queue. Also with
        # --local-workers 0 (an app host of a team, which keeps submitted code off it): nothing
        # else would send them. Several hosts' alerts workers each claim a delivery once.
        threads.append(_WorkerThread(settings.RUNSTUDIO_ALERTS_QUEUE, isolated=False))
        return threads

    def _banner(self, url: str, seconds: float, threads, *, demo: bool) -> None:
        has_user = get_user_model().objects.exists()
        connection.close()
        lines = [f"Runstudio is serving at {url}/ (ready in {seconds:.1f} s)"]
        if threads:
            lines.append(
                f"  {len(threads) - 1} worker(s) for compute target 'local' and one for "
                f"{settings.RUNSTUDIO_ALERTS_QUEUE!r}, in this process."
            )
        lines.append("Next:")
        # People and the CLI use the team's address (behind a balancer), not this host's port.
        url = settings.PUBLIC_URL or url
        if not has_user:
            lines.append("  create a user   runstudio user create --username alice --superuser")
        sign_in = f"  sign in         {url}/accounts/login/"
        if demo:
            sign_in += "  (demo: user 'demo', password 'demo-password')"
        lines.append(sign_in)
        # The demo has its user and workspace; otherwise the ones the README's quick start makes.
        setup = (
            "--username demo; runstudio folder attach -w demo"
            if demo
            else "--username alice; runstudio workspace create lab; runstudio folder attach -w lab"
        )
        lines.append(
            f"  log a run       runstudio login --url {url} {setup}; then in a script: "
            "Workspace.from_config(), exp.start_logging(), run.log('loss', 0.1) "
            "(README, Quick start)"
        )
        lines.append("Stop with Ctrl+C.")
        self.say("\n".join(lines))

    def _stop(self, gunicorn: subprocess.Popen, threads: list[_WorkerThread], signals) -> None:
        for thread in threads:
            thread.stop()
        if gunicorn.poll() is None:
            gunicorn.send_signal(signal.SIGTERM)

        def wait(seconds: float, *, until_signals: int | None = None) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and (
                gunicorn.poll() is None or any(t.is_alive() for t in threads)
            ):
                if until_signals is not None and len(signals) >= until_signals:
                    return
                time.sleep(0.05)

        wait(FIRST_GRACE, until_signals=2)
        for thread in threads:
            thread.interrupt()
        if gunicorn.poll() is None:
            # Its quick shutdown: a graceful one waits out idle keep-alive connections (an SDK's).
            gunicorn.send_signal(signal.SIGQUIT)
        wait(settings.RUNSTUDIO_CANCEL_GRACE)
        if gunicorn.poll() is None:
            gunicorn.kill()
        gunicorn.wait()
