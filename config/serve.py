"""Serve Flowdeck: ``python -m config.serve`` runs the production web tier (infra/docker/Dockerfile,
infra/compose.yaml, the Helm chart); ``python -m config.embedded`` runs the same server with the
periodic loop beside it.

Each server process is uvicorn serving :mod:`config.asgi` (HTTP on a bounded pool of reused
threads, websockets on the event loop). With ``--workers`` N > 1 (default
``settings.FLOWDECK_WEB_WORKERS``: one per CPU with PostgreSQL and Redis, less one when PostgreSQL is
on this host) this process only starts,
watches and stops N server processes; it never imports the application. Each of them binds the port
with its own ``SO_REUSEPORT`` socket, so the kernel spreads new connections over them evenly: with
one shared socket the process that wakes first accepts a whole burst of connections, and keep-alive
clients (a proxy, agents) then stay on it (docs/performance.md, "The server is CPU-bound in one
process"). A server process that dies is started again.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only from the proxies in
``settings.FLOWDECK_TRUSTED_PROXIES`` (:func:`trusted_proxies`); the client is then the right-most
address in ``X-Forwarded-For`` that is not one of them, which a client cannot choose.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger("flowdeck.serve")

APP = "config.asgi:application"
# A server process that exits with an error within this long of its start is broken (a port in
# use, bad settings): stop everything rather than start it again and again. One killed by a signal
# (the OOM killer, an operator) is started again.
STARTUP_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 30.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other server processes bind to the same address too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def trusted_proxies() -> list[str]:
    """``settings.FLOWDECK_TRUSTED_PROXIES`` for uvicorn's proxy headers, checked: every entry an
    IP address or network, since uvicorn would compare anything else as text and never match it.
    Trusting every address ("*") lets each client choose its own by sending ``X-Forwarded-For``
    (a fresh rate-limit bucket per request, any address in the audit log): the production checklist
    refuses it (core/checks.py), and elsewhere it is logged."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    entries = [entry.strip() for entry in settings.FLOWDECK_TRUSTED_PROXIES if entry.strip()]
    if "*" in entries:
        logger.warning('FLOWDECK_TRUSTED_PROXIES is "*": clients can choose their address with X-Forwarded-For.')
        return ["*"]
    checked = []
    for entry in entries:
        try:
            address = ipaddress.ip_network(entry, strict=False) if "/" in entry else ipaddress.ip_address(entry)
        except ValueError:
            raise SystemExit(f"FLOWDECK_TRUSTED_PROXIES: {entry!r} is not an IP address or network "
                             "(a host name never matches: give the proxy's address).") from None
        checked.append(str(address))
    return checked


def run_one(
    host: str,
    port: int,
    *,
    app: str = APP,
    factory: bool = False,
    log_level: str = "info",
    access_log: bool = True,
    reuse_port: bool = False,
    before_serving: Callable[[], object] | None = None,
) -> None:
    """Serve in this process (uvicorn, one event loop). ``before_serving`` runs once the
    application is imported, i.e. once Django is set up."""
    import uvicorn

    from config.access_log import log_config

    config = uvicorn.Config(app, host=host, port=port, factory=factory, log_level=log_level,
                            log_config=log_config(), access_log=access_log, proxy_headers=True,
                            forwarded_allow_ips=trusted_proxies(),
                            # Channels' router does not speak the ASGI lifespan protocol.
                            lifespan="off")
    config.load()  # imports the application: Django is set up from here on
    freeze_startup_heap()
    if before_serving is not None:
        before_serving()
    server = uvicorn.Server(config)
    server.run(sockets=[reuse_port_socket(host, port)] if reuse_port else None)


def freeze_startup_heap() -> None:
    """Keep what start-up made (modules, Django's, DRF's and the app's machinery: most of the
    process's objects, and they live as long as it does) out of the cyclic collector's full passes.
    A full pass holds the GIL while it walks every tracked object, so every request in flight waits:
    a pass over everything took 74 ms under load, over what start-up did not make 13-19 ms
    (docs/performance.md, "Tenth round"). Reference counting still frees frozen objects; a cycle
    among them would stay, so the garbage is collected first."""
    gc.collect()
    gc.freeze()


def supervise(argv_for_worker: Sequence[str], workers: int) -> int:
    """Run ``workers`` server processes (``python -m config.serve <argv_for_worker>``) until
    SIGTERM/SIGINT, starting again any that dies; returns the exit status."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> tuple[subprocess.Popen[bytes], float]:
        proc = subprocess.Popen([sys.executable, "-m", "config.serve", *argv_for_worker])  # noqa: S603 - our own arguments
        return proc, time.monotonic()

    procs = [start() for _ in range(workers)]
    logger.info("Started %d server processes: %s", workers, " ".join(str(p.pid) for p, _ in procs))
    status = 0
    while not stopping:
        time.sleep(0.2)
        for i, (proc, started) in enumerate(procs):
            code = proc.poll()
            if code is None or stopping:
                continue
            if code > 0 and time.monotonic() - started < STARTUP_SECONDS:
                logger.error("Server process %d exited with %s at start-up; stopping", proc.pid, code)
                status, stopping = 1, True
                break
            logger.warning("Server process %d exited with %s; starting another", proc.pid, code)
            procs[i] = start()
    for proc, _ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # uvicorn finishes the requests under way, then exits
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for proc, _ in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return status


def default_workers() -> int:
    """``settings.FLOWDECK_WEB_WORKERS``, read without setting Django up."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    return int(settings.FLOWDECK_WEB_WORKERS)


def refuse_unsafe_settings(process: str) -> None:
    """Exit with one line per broken rule of the production security checklist (core/checks.py)
    before anything is served. It reads the settings only, so the supervisor checks once, before it
    starts any server process."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from core.checks import refuse_to_start_if_unsafe

    refuse_to_start_if_unsafe(process)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("FLOWDECK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("FLOWDECK_PORT", "8000")))
    parser.add_argument("--log-level", default=os.environ.get("FLOWDECK_LOG_LEVEL", "info"))
    parser.add_argument("--no-access-log", action="store_true", help="Do not log every request.")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m config.serve", description=(__doc__ or "").split("\n\n")[0])
    add_server_arguments(parser)
    parser.add_argument("--workers", type=int, default=None,
                        help="Server processes (default: FLOWDECK_WEB_WORKERS, else one per CPU with PostgreSQL "
                             "and Redis, less one for a database on this host; one without).")
    parser.add_argument("--app", default=APP, help=argparse.SUPPRESS)  # benchmarks wrap the application
    parser.add_argument("--factory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    refuse_unsafe_settings("python -m config.serve")
    workers = args.workers if args.workers is not None else default_workers()
    if workers <= 1:
        run_one(args.host, args.port, app=args.app, factory=args.factory, log_level=args.log_level,
                access_log=not args.no_access_log, reuse_port=args.reuse_port)
        return
    worker_argv = ["--workers", "1", "--reuse-port", "--host", args.host, "--port", str(args.port),
                   "--log-level", args.log_level, "--app", args.app]
    worker_argv += ["--factory"] * args.factory + ["--no-access-log"] * args.no_access_log
    sys.exit(supervise(worker_argv, workers))


if __name__ == "__main__":
    main()
