"""Embedded mode: one process serves the API, websockets and the web app, and runs the periodic
services on an in-process loop (docs/architecture.md, "Embedded and production modes").

``scripts/start`` runs ``python -m config.embedded``, which

1. imports :mod:`config.asgi` (that sets Django up),
2. starts :class:`PeriodicLoop` on a daemon thread when ``settings.FLOWDECK_INPROCESS_PERIODIC`` is
   true (the default when ``REDIS_URL`` is unset, i.e. in embedded mode), and
3. serves ``config.asgi:application`` with uvicorn (:mod:`config.serve`: one process, one event
   loop, HTTP requests on a small pool of reused threads).

In production the same service functions run under Celery beat (django-celery-beat) instead, so
``FLOWDECK_INPROCESS_PERIODIC`` is false there and this loop never starts.

:data:`SERVICES` is built from ``orchestration.periodic.PLATFORM_TICKS``: registering a periodic
service is one ``PlatformTick`` there, which both this loop and Celery beat then run.

The callable takes no arguments and is a plain service function: it opens its own transactions,
scopes itself to workspaces (or uses ``core.tenancy.rls_bypass`` on purpose), and is safe to run
twice at once, because Celery beat may overlap a slow run with the next one. The loop runs the
registered services one after another, each at most once per ``every`` seconds; an exception is
logged and the loop carries on.

Other entry points: ``python -m config.embedded --once`` runs every registered service once and
exits (useful from cron or while debugging a service); ``--no-periodic`` serves without the loop.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from orchestration.periodic import PLATFORM_TICKS

logger = logging.getLogger("flowdeck.embedded")

DEFAULT_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class PeriodicService:
    """A service callable (dotted path, no arguments) run every ``every`` seconds."""

    path: str
    every: float = DEFAULT_INTERVAL_SECONDS


# The periodic services run in embedded mode: the platform ticks, which Celery beat runs in
# production, each at its own interval (declared once, in orchestration.periodic).
SERVICES: tuple[PeriodicService, ...] = tuple(
    PeriodicService(tick.service, every=tick.every_seconds) for tick in PLATFORM_TICKS
)


@dataclass
class _Entry:
    service: PeriodicService
    func: Callable[[], object]
    next_run: float


class PeriodicLoop:
    """Runs periodic service callables on one daemon thread.

    ``clock`` is injectable so that tests can drive :meth:`run_due` without sleeping.
    """

    def __init__(
        self,
        services: Iterable[PeriodicService],
        *,
        tick_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        resolve: Callable[[str], Callable[[], object]] | None = None,
    ) -> None:
        if resolve is None:
            from django.utils.module_loading import import_string

            resolve = import_string
        self.tick_seconds = tick_seconds
        self._clock = clock
        now = clock()
        # Resolve every path up front: a typo in the registry fails at start-up, not an hour later.
        self._entries = [_Entry(service=s, func=resolve(s.path), next_run=now) for s in services]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def services(self) -> list[PeriodicService]:
        return [e.service for e in self._entries]

    def run_due(self, now: float | None = None) -> list[str]:
        """Run every service whose time has come; return the paths that ran (failed ones included)."""
        now = self._clock() if now is None else now
        ran = []
        for entry in self._entries:
            if self._stop.is_set():
                break
            if entry.next_run > now:
                continue
            self._run_one(entry)
            entry.next_run = now + entry.service.every
            ran.append(entry.service.path)
        return ran

    def run_all_once(self) -> list[str]:
        """Run every registered service once, regardless of its schedule."""
        for entry in self._entries:
            self._run_one(entry)
        return [e.service.path for e in self._entries]

    def _run_one(self, entry: _Entry) -> None:
        from django.db import close_old_connections

        close_old_connections()
        started = time.monotonic()
        try:
            entry.func()
        except Exception:
            logger.exception("Periodic service %s failed", entry.service.path)
        else:
            logger.debug("Periodic service %s ran in %.3fs", entry.service.path, time.monotonic() - started)
        finally:
            close_old_connections()

    def _run(self) -> None:
        logger.info("Periodic loop started with %d service(s)", len(self._entries))
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(self.tick_seconds)
        from django.db import connections

        connections.close_all()
        logger.info("Periodic loop stopped")

    def start(self) -> threading.Thread:
        if self._thread is not None:
            raise RuntimeError("The periodic loop is already running.")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="flowdeck-periodic", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def with_max_interval(services: Iterable[PeriodicService], every: float | None) -> tuple[PeriodicService, ...]:
    """The services with no interval longer than ``every`` seconds (demos and end-to-end tests
    want the reaper and the scheduler to sweep every second or two, not every 30 s)."""
    if not every:
        return tuple(services)
    return tuple(replace(s, every=min(s.every, every)) for s in services)


def serve(
    host: str,
    port: int,
    *,
    periodic: bool = True,
    log_level: str = "info",
    periodic_every: float | None = None,
    workers: int = 1,
) -> None:
    """Serve with uvicorn (:mod:`config.serve`: HTTP on a bounded pool of reused threads,
    websockets on the event loop), with the periodic loop beside it when enabled. Importing the
    application starts the web-tier beat too (even with ``--no-periodic``): the reaper, here or in
    Celery, reaps only while some server process beats.

    ``workers`` > 1 runs several server processes; only where nothing lives in one process: not with
    the in-process periodic loop, the in-memory channel layer or SQLite."""
    from django.conf import settings

    from config import serve as server

    if workers > 1:
        single = [why for why, applies in (
            ("the periodic services run in-process", periodic and settings.FLOWDECK_INPROCESS_PERIODIC),
            ("the channel layer is in memory", "InMemory" in settings.CHANNEL_LAYERS["default"]["BACKEND"]),
            ("the database is SQLite", settings.IS_SQLITE),
        ) if applies]
        if single:
            logger.warning("Serving from one process, not %d: %s.", workers, "; ".join(single))
        else:
            argv = ["--workers", "1", "--reuse-port", "--host", host, "--port", str(port), "--log-level", log_level]
            raise SystemExit(server.supervise(argv, workers))

    loop = None

    def start_loop() -> None:
        nonlocal loop
        if periodic and settings.FLOWDECK_INPROCESS_PERIODIC:
            loop = PeriodicLoop(with_max_interval(SERVICES, periodic_every))
            loop.start()
        elif periodic:
            logger.info("FLOWDECK_INPROCESS_PERIODIC is off: periodic services are left to Celery beat.")

    try:
        server.run_one(host, port, log_level=log_level, before_serving=start_loop)
    finally:
        if loop is not None:
            loop.stop()


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    parser = argparse.ArgumentParser(prog="python -m config.embedded", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("FLOWDECK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("FLOWDECK_PORT", "8000")))
    parser.add_argument("--log-level", default=os.environ.get("FLOWDECK_LOG_LEVEL", "info"))
    parser.add_argument(
        "--workers", default="1",
        help="Server processes, or 'auto' for FLOWDECK_WEB_WORKERS (one per CPU with PostgreSQL and Redis "
             "and the periodic services in Celery beat, less one for a database on this host; otherwise one).",
    )
    parser.add_argument("--no-periodic", action="store_true", help="Serve without the periodic loop.")
    parser.add_argument("--once", action="store_true", help="Run every periodic service once and exit.")
    parser.add_argument(
        "--periodic-every", type=float, default=float(os.environ.get("FLOWDECK_PERIODIC_EVERY", "0")) or None,
        help="Run each periodic service at least this often (seconds); for demos and end-to-end tests.",
    )
    args = parser.parse_args(argv)
    from config.serve import refuse_unsafe_settings

    refuse_unsafe_settings("python -m config.embedded")
    if args.once:
        import django

        django.setup()
        ran = PeriodicLoop(SERVICES).run_all_once()
        print(f"Ran {len(ran)} periodic service(s): {', '.join(ran) or 'none registered'}")
        return
    if args.workers == "auto":
        from config.serve import default_workers

        workers = default_workers()
    else:
        workers = int(args.workers)
    serve(args.host, args.port, periodic=not args.no_periodic, log_level=args.log_level,
          periodic_every=args.periodic_every, workers=workers)


if __name__ == "__main__":
    main()
