"""A Flowdeck deployment of the fault suite's own, made of real processes that a test may stop,
kill and start again: a PostgreSQL cluster (``initdb`` in a temporary directory, a free port), a
``redis-server`` (free port, no persistence: it always starts empty), the web tier
(``python -m config.embedded --no-periodic``, uvicorn), a Celery worker and one Celery beat
(``DatabaseScheduler``), wired as production wires them: migrations as the owner role, everything
else as the application role that row-level security applies to.

The platform ticks are installed with ``FLOWDECK_PLATFORM_TICK_SECONDS=1`` (every tick every
second), so the reaper, the scheduler and the late-run marker react within a second or two.

:meth:`Stack.sql` connects as the owner with ``app.rls_bypass`` on for the session, so it sees
every workspace's rows (RLS is forced on tenant tables, even for their owner).

Each component's ``stop()``/``start()`` keeps its port, so clients configured with the stack's
URLs reach the new process. :meth:`Stack.ensure_up` starts whatever a previous test left stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from flowdeck.client import Client
from tests.sdk.e2e.harness import FLOWDECK, AgentProcess, cli, start_agent

ROOT = Path(__file__).resolve().parents[2]
OWNER_ROLE = "flowdeck_owner"
APP_ROLE = "flowdeck_app"
DATABASE = "flowdeck"
TICK_SECONDS = 1
ROLES = ("owner", "admin", "developer", "viewer", "agent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("The fault suite needs PostgreSQL's server binaries (initdb, pg_ctl).")
    return Path(initdb).parent


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the test process dies (a killed pytest must not leave a
    worker and a beat ticking every second). Linux only; silently nothing elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _base_env() -> dict[str, str]:
    """The test process's environment without anything that points at a database, a Redis or a
    Flowdeck server (the stack's processes get their own)."""
    drop = ("FLOWDECK_", "DJANGO_", "DATABASE_", "REDIS_", "CELERY_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


class Postgres:
    """A PostgreSQL cluster of the stack's own. ``initdb`` and ``postgres`` refuse to run as root,
    so as root the cluster belongs to the ``postgres`` OS user (``setpriv`` execs, it does not
    fork: the postmaster is this process's child, reaped here however it dies)."""

    def __init__(self, base: Path) -> None:
        self.bin = _pg_bin()
        self.dir = base / "pg"
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.port = free_port()
        self.url = f"postgres://{OWNER_ROLE}@127.0.0.1:{self.port}/{DATABASE}"
        self.app_url = f"postgres://{APP_ROLE}@127.0.0.1:{self.port}/{DATABASE}"
        self.superuser_url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            # --pdeathsig: a fast shutdown when the test process dies (set after the uid change,
            # which would clear it)
            command = ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups", "--pdeathsig", "INT",
                       "--", *command]
        return command

    def init(self) -> None:
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        result = subprocess.run(
            self._command("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                          "--no-sync", "--no-instructions"),
            capture_output=True, text=True, timeout=120, check=False, cwd=self.dir,
            env={**_base_env(), "LC_ALL": "C.UTF-8"})
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")
        settings = {
            "listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.dir}'",
            "max_connections": "200", "shared_buffers": "32MB", "fsync": "off", "synchronous_commit": "off",
            "full_page_writes": "off", "log_min_messages": "warning", "log_line_prefix": "'%m [%p] '",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# the fault suite's cluster\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        self.start()
        with psycopg.connect(self.superuser_url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {OWNER_ROLE} LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS")
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.is_running() else None  # type: ignore[union-attr]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.superuser_url, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def start(self, timeout: float = 60) -> None:
        if self.is_running():
            return
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self._command("postgres", "-D", str(self.data)), cwd=self.dir,
                                         env={**_base_env(), "LC_ALL": "C.UTF-8"}, stdout=log,
                                         stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self._accepts() or self.proc.poll() is not None, timeout,  # type: ignore[union-attr]
                       "PostgreSQL to accept connections")
        except RuntimeError:
            self.kill9()
            raise
        if not self.is_running():
            raise RuntimeError(f"PostgreSQL exited at start-up:\n{_tail(self.log_path)}")

    def stop(self, timeout: float = 60) -> None:
        """A fast shutdown (SIGINT: roll back open transactions, disconnect, checkpoint)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.proc = None

    def kill9(self) -> None:
        """SIGKILL the postmaster, as a crash would, then wait for its backends to notice and exit
        (a new postmaster refuses to start while they still hold the old shared memory); the next
        start runs crash recovery."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            children = _children(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            try:
                wait_until(lambda: not any(_alive(c) for c in children), 10, "PostgreSQL's backends to exit")
            except RuntimeError:
                for child in children:
                    _kill(child)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        try:
            self.stop(timeout=20)
        except Exception:  # noqa: BLE001 - tearing down whatever is left
            self.kill9()


class _Child:
    """Stop, kill and restart for a server process this module started as its direct child."""

    proc: subprocess.Popen[bytes] | None
    stop_timeout: float = 20

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float | None = None) -> None:
        _terminate(self.proc, timeout=self.stop_timeout if timeout is None else timeout)
        self.proc = None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Redis(_Child):
    """A redis-server without persistence: every start is an empty Redis (a restart loses
    everything, like a cache node being replaced)."""

    stop_timeout = 10

    def __init__(self, base: Path) -> None:
        self.dir = base / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        if self.is_running():
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.dir), "--maxclients", "2000"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
        log.close()
        wait_until(lambda: self.ping() or self.proc.poll() is not None, 10, "redis-server to answer")  # type: ignore[union-attr]
        if not self.is_running():
            raise RuntimeError(f"redis-server exited at start-up:\n{_tail(self.log_path)}")



class _Process(_Child):
    """A long-running Flowdeck process (web, worker, beat) restartable with the same arguments."""

    name = "process"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.log_path = stack.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def args(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return self.stack.server_env()

    def ready(self, log_offset: int) -> bool:
        raise NotImplementedError

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it to be ready (see :meth:`wait_ready`)."""
        if self.is_running():
            return
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args(), cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.proc is not None, f"{self.name} was not started"
        deadline = time.monotonic() + timeout
        while not self.ready(self._offset):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up (see {self.log_path}):\n"
                                   + _tail(self.log_path))
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"{self.name} was not ready within {timeout}s:\n" + _tail(self.log_path))
            time.sleep(0.05)


    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


class Server(_Process):
    """The web tier: uvicorn serving the ASGI app (API, websockets), no periodic loop."""

    name = "server"

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return [sys.executable, "-m", "config.embedded", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--no-periodic"]

    def ready(self, log_offset: int) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


class Worker(_Process):
    """A Celery worker (threads pool) on the stack's Redis broker, as the application role."""

    name = "worker"

    def args(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "config.celery:app", "worker", "--pool", "threads",
                "--concurrency", "4", "--loglevel", "INFO", "--hostname", f"faults-{self.stack.redis.port}@%h",
                "--without-gossip", "--without-mingle"]

    def ready(self, log_offset: int) -> bool:
        return " ready." in self._log_since(log_offset)


class Beat(_Process):
    """The one Celery beat, with django-celery-beat's DatabaseScheduler, started exactly as
    ``infra/compose.yaml`` starts it (the platform ticks install themselves at its start)."""

    name = "beat"

    def args(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "config.celery:app", "beat", "--loglevel", "INFO",
                "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile", str(self.stack.dir / "beat.pid"), "--schedule", str(self.stack.dir / "beat-schedule")]

    def ready(self, log_offset: int) -> bool:
        return "platform tick(s) installed" in self._log_since(log_offset)

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        (self.stack.dir / "beat.pid").unlink(missing_ok=True)

    def kill9(self) -> None:
        super().kill9()
        (self.stack.dir / "beat.pid").unlink(missing_ok=True)


class Seeder(_Process):
    """One long-lived ``python -m tests.faults.seed`` (Django set up once): it reads a slug per
    line and answers with the seeded workspace's keys as one JSON line."""

    name = "seeder"

    def args(self) -> list[str]:
        return [sys.executable, "-u", "-m", "tests.faults.seed"]

    def env(self) -> dict[str, str]:
        # no pool: each seeding opens a fresh connection, so a PostgreSQL restart does not matter
        return {**self.stack.server_env(), "DATABASE_POOL": "false"}

    def ready(self, log_offset: int) -> bool:
        return True

    def spawn(self) -> None:
        if self.is_running():
            return
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args(), cwd=ROOT, env=self.env(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, preexec_fn=_die_with_parent)

    def seed(self, slug: str, timeout: float = 60) -> dict[str, str]:
        self.spawn()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(slug.encode() + b"\n")
        self.proc.stdin.flush()
        timer = threading.Timer(timeout, self.kill9)  # a hung seeder fails the test, not the session
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line:
            self.proc = None
            raise RuntimeError(f"seeding {slug} failed (see {self.log_path}):\n{_tail(self.log_path)}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"seeding {slug} failed: {answer['error']}")
        return dict(answer["keys"])


class Stack:
    """See the module docstring. Build with :meth:`Stack.create`; tear down with :meth:`destroy`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pg = Postgres(directory)
        self.redis = Redis(directory)
        self.server = Server(self)
        self.worker = Worker(self)
        self.beat = Beat(self)
        self.seeder = Seeder(self)
        self.timings: dict[str, float] = {}

    @classmethod
    def create(cls) -> Stack:
        directory = Path(tempfile.mkdtemp(prefix="flowdeck-faults-"))
        directory.chmod(0o755)  # the postgres OS user must reach its cluster inside
        stack = cls(directory)
        try:
            stack.redis.start()
            stack._timed("postgres (initdb + start)", stack.pg.init)
            # Django's import is most of each process's start-up: the seeder, the server and the
            # worker import it while the database migrates (none touches the schema at start);
            # beat reads its schedule at start, so it waits for migrate.
            for process in (stack.seeder, stack.server, stack.worker):
                process.spawn()
            stack._timed("migrate", stack.migrate)
            stack._timed("server, worker, beat", lambda: stack._start_all((stack.server, stack.worker, stack.beat)))
        except BaseException:
            stack.destroy()
            raise
        return stack

    @staticmethod
    def _start_all(processes: Iterable[_Process]) -> None:
        """Spawn every process not running yet, then wait for each to be ready."""
        processes = list(processes)
        for process in processes:
            process.spawn()
        for process in processes:
            process.wait_ready()

    def _timed(self, what: str, step: Callable[[], object]) -> None:
        started = time.monotonic()
        step()
        self.timings[what] = round(time.monotonic() - started, 2)

    # --- environments ---------------------------------------------------------------------------
    def server_env(self, *, owner: bool = False) -> dict[str, str]:
        """Environment of a server process (web, worker, beat, manage.py) on this stack."""
        env = _base_env()
        env.update(
            DATABASE_URL=self.pg.url if owner else self.pg.app_url,
            FLOWDECK_DB_APP_ROLE=APP_ROLE,
            REDIS_URL=self.redis.url,
            DJANGO_SETTINGS_MODULE="config.settings",
            FLOWDECK_FAST_PASSWORD_HASHER="1",
            FLOWDECK_INPROCESS_PERIODIC="0",
            FLOWDECK_PLATFORM_TICK_SECONDS=str(TICK_SECONDS),
            FLOWDECK_VAR_DIR=str(self.dir / "var"),
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def env(self) -> dict[str, str]:
        """Environment for SDK subprocesses (the CLI, agents): the server's URL, nothing of Django."""
        env = _base_env()
        env.update(FLOWDECK_API_URL=self.server.url, NO_COLOR="1", TERM="dumb", COLUMNS="120")
        return env

    # --- database -------------------------------------------------------------------------------
    def migrate(self) -> None:
        result = self.manage("migrate", "--noinput", "--skip-checks", timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")

    def manage(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``manage.py …`` against the stack's database as the owner role."""
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**self.server_env(owner=True),
                              **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement as the owner with the RLS bypass on (every workspace's rows);
        autocommit. Returns the rows, or ``[]`` for a statement without a result."""
        with psycopg.connect(self.pg.url, autocommit=True, options="-c app.rls_bypass=on", connect_timeout=5) as conn:
            cursor = conn.execute(query, params or None)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    # --- lifecycle ------------------------------------------------------------------------------
    def ensure_up(self) -> None:
        """Start, in dependency order, whatever a previous test left stopped or killed."""
        if not self.pg.is_running():
            self.pg.start()
        if not self.redis.is_running():
            self.redis.start()
        self._start_all((self.server, self.worker, self.beat))

    def destroy(self) -> None:
        for process in (self.seeder, self.beat, self.worker, self.server):
            try:
                process.stop(timeout=10)
            except Exception:  # noqa: BLE001
                process.kill9()
        self.redis.kill9()
        self.pg.destroy()
        if os.environ.get("FLOWDECK_FAULTS_KEEP"):  # keep the logs for a post-mortem
            print(f"\nThe fault stack's directory (logs, cluster) is kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def new_world(self, tmp: Path) -> World:
        """A fresh workspace (members of every role, an agent service account, their keys)."""
        slug = f"f{uuid.uuid4().hex[:12]}"
        keys = self.seeder.seed(slug)
        home = tmp / "flowdeck-home"
        home.mkdir(parents=True, exist_ok=True)
        return World(stack=self, slug=slug, keys=keys, home=home)


@dataclass
class World:
    """One workspace in the stack's database, seen from outside: its slug and its members' keys."""

    stack: Stack
    slug: str
    keys: dict[str, str]
    home: Path
    agents: list[AgentProcess] = field(default_factory=list)

    def client(self, role: str = "developer", *, retries: int = 2) -> Client:
        return Client(api_url=self.stack.server.url, api_key=self.keys[role], workspace=self.slug, retries=retries)

    def env(self, role: str = "agent") -> dict[str, str]:
        """Environment for ``flowdeck`` subprocesses acting as ``role`` in this workspace."""
        return {**self.stack.env(), "FLOWDECK_API_KEY": self.keys[role], "FLOWDECK_WORKSPACE": self.slug,
                "FLOWDECK_HOME": str(self.home)}

    def start_agent(self, tmp: Path, *labels: str, name: str = "agent", lease: int = 10,
                    extra: Iterable[str] = ()) -> AgentProcess:
        """``flowdeck agent start`` (tests.sdk.e2e.harness.start_agent) with the agent's key; the
        fixture kills it (and its flow-run processes) at the end of the test."""
        agent = start_agent(self.env("agent"), tmp, *labels, name=name, lease=lease, extra=extra)
        self.agents.append(agent)
        return agent

    def register(self, path: Path, project: str = "faults") -> dict[str, str]:
        """The real ``flowdeck register`` with a developer's key; returns {flow name: flow id}."""
        result = cli(self.env("developer"), "register", str(path), "--project", project, "--output", "json")
        if result.returncode != 0:
            raise AssertionError(f"{FLOWDECK} register failed:\n{result.stdout}{result.stderr}")
        return {item["flow"]: item["flow_id"] for item in json.loads(result.stdout)}

    def cleanup(self) -> None:
        """Kill every agent this world started, with its process group (its flow-run processes)."""
        for agent in self.agents:
            for sig in (signal.SIGCONT, signal.SIGKILL):  # a stopped group must be woken to die cleanly
                try:
                    os.killpg(agent.proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                agent.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _terminate(proc: subprocess.Popen[bytes] | None, *, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)  # a test may have left it stopped
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
