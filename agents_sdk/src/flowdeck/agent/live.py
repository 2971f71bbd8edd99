"""The agent's live connection: a websocket on which the server pushes work and cancellations.

``ws(s)://<server>/ws/v1/workspaces/<slug>/agents/<agent_id>/``, authenticated with the agent's key
(``Authorization: Bearer …`` on the handshake, never in the URL). The server sends:

- ``{"type": "hello", "agent_id": …}`` once connected;
- ``{"type": "work_available", "labels": […], "at": null | ISO}``: a run this agent may claim is due
  now (``at`` null) or will be at ``at`` (a scheduled run): the claim loop claims at once, or at that
  time, instead of waiting for its next poll;
- ``{"type": "cancel", "flow_run_id": …}``: stop that run now.

The connection lives in a background thread that only *receives*: it turns messages into
:data:`Notice` objects on a queue and wakes the agent, whose claim-loop thread acts on them (so the
agent's state is only ever touched by that one thread). When the socket is down the agent keeps
polling at its poll interval, which always goes on anyway; the thread reconnects with exponential
back-off and jitter (at most :data:`RECONNECT_CAP_SECONDS` apart), and reports every change
(``connected`` / ``polling (reason)``) on the queue.

``websockets`` is imported only here and only when the connection starts, so an SDK installed
without it still runs (polling only, saying why).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowdeck import __version__

if TYPE_CHECKING:
    from flowdeck.client import Client

logger = logging.getLogger("flowdeck.agent.live")

# Close codes the server uses (see the protocol in docs/live-updates.md) and what they mean to an operator.
CLOSE_REASONS = {
    1000: "the server closed the connection",
    1001: "the server is going away",
    1006: "the connection was lost",
    1011: "the server hit an error",
    1012: "the server is restarting",
    1013: "the server is overloaded",
    4008: "the server dropped the connection (too slow to read)",
    4401: "the server refused the agent's key",
    4403: "the key may not listen for this agent",
}


@dataclass(frozen=True)
class WorkAvailable:
    """Claim now (``at`` is None) or at ``at`` (seconds since the epoch, the server's clock)."""

    labels: tuple[str, ...]
    at: float | None


@dataclass(frozen=True)
class CancelRun:
    flow_run_id: str


@dataclass(frozen=True)
class LiveState:
    """Whether pushes arrive (``connected``) or the agent relies on polling, and why."""

    connected: bool
    reason: str = ""

    @property
    def text(self) -> str:
        return "connected" if self.connected else f"polling ({self.reason})"


Notice = WorkAvailable | CancelRun | LiveState


def websocket_url(api_url: str, workspace: str, agent_id: str) -> str:
    """The agent socket's URL on the server at ``api_url`` (http → ws, https → wss; a path prefix
    the server is mounted under is kept)."""
    parts = urllib.parse.urlsplit(api_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"Cannot open a websocket to {api_url!r}: the URL must start with http:// or https://.")
    path = (f"{parts.path.rstrip('/')}/ws/v1/workspaces/{urllib.parse.quote(workspace, safe='')}/agents/"
            f"{urllib.parse.quote(agent_id, safe='')}/")
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def parse_time(value: Any) -> float | None:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) as epoch seconds; None if unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_message(raw: str | bytes) -> Notice | None:
    """The notice a server message stands for; None for ``hello``/``pong``, unknown types (a newer
    server) and malformed messages (logged), which are ignored."""
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        logger.warning("Ignoring a malformed message on the live connection: %.200r", raw)
        return None
    if not isinstance(message, dict):
        logger.warning("Ignoring a malformed message on the live connection: %.200r", raw)
        return None
    kind = message.get("type")
    if kind == "work_available":
        labels = message.get("labels")
        at_raw = message.get("at")
        at = parse_time(at_raw)
        if at_raw is not None and at is None:
            logger.warning("work_available with an unreadable time %r: claiming now", at_raw)
        return WorkAvailable(tuple(str(x) for x in labels) if isinstance(labels, list) else (), at)
    if kind == "cancel":
        run_id = message.get("flow_run_id")
        if isinstance(run_id, str) and run_id:
            return CancelRun(run_id)
        logger.warning("Ignoring a cancel message without a flow_run_id: %.200r", raw)
        return None
    if kind == "error":
        logger.warning("The server reported an error on the live connection: %s", message.get("message") or message)
    return None


# The longest wait between two reconnection attempts: the socket is back within seconds of the
# server (or its Redis) returning, while a refused connection attempt costs the server next to nothing.
RECONNECT_CAP_SECONDS = 5.0


class Backoff:
    """Exponential back-off with jitter: ``base·factor^n`` capped at ``cap``, each delay scaled by a
    random factor in ``[1 - jitter, 1]`` so that agents cut off together do not reconnect together."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, factor: float = 2.0, jitter: float = 0.5,
                 rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.factor, self.jitter, self.rng = base, cap, factor, jitter, rng
        self.attempts = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * self.factor ** min(self.attempts, 32))
        self.attempts += 1
        return delay * (1 - self.jitter * self.rng())

    def reset(self) -> None:
        self.attempts = 0


def client_credentials(client: Client) -> tuple[str, str, str]:
    """The API URL, key and workspace of the agent's client (the socket uses the same key)."""
    from flowdeck.agent.process import client_settings

    url, key, workspace = client_settings(client)
    if not workspace:
        raise ValueError("the agent's workspace is unknown")
    return url, key, workspace


class LiveConnection:
    """The background websocket client; see the module docstring.

    ``wake`` is called (from the connection's thread) after every notice put on :attr:`notices`.
    A connection that stayed up ``stable_after`` seconds resets the back-off, so a server restart is
    followed by a quick reconnection while a server that accepts and drops at once is not hammered.
    """

    def __init__(self, url: str, api_key: str, *, wake: Callable[[], None] = lambda: None,
                 backoff: Backoff | None = None, open_timeout: float = 10.0, ping_interval: float = 15.0,
                 ping_timeout: float = 10.0, stable_after: float = 10.0) -> None:
        self.url = url
        self.api_key = api_key
        self.wake = wake
        self.backoff = backoff or Backoff(cap=RECONNECT_CAP_SECONDS)
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.stable_after = stable_after
        self.notices: queue.SimpleQueue[Notice] = queue.SimpleQueue()
        self.state = LiveState(False, "connecting")
        self.connections = 0  # successful handshakes, for tests and the status
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socket: Any = None
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self.state.connected

    def start(self) -> LiveConnection:
        self._thread = threading.Thread(target=self._run, name="flowdeck-live", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            sock = self._socket
        if sock is not None:
            try:
                sock.close()
            except Exception as exc:  # already closing: nothing to do
                logger.debug("Closing the live connection: %s", exc)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def drain(self) -> list[Notice]:
        """The notices received since the last call, oldest first."""
        out: list[Notice] = []
        while True:
            try:
                out.append(self.notices.get_nowait())
            except queue.Empty:
                return out

    # --- the connection's thread ---------------------------------------------------------------------

    def _notify(self, notice: Notice) -> None:
        self.notices.put(notice)
        self.wake()

    def _set_state(self, state: LiveState) -> None:
        if state != self.state:
            self.state = state
            self._notify(state)

    def _run(self) -> None:
        try:
            from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
            from websockets.sync.client import connect
        except ImportError:
            self._set_state(LiveState(False, "live updates need the websockets package"))
            return
        while not self._stop.is_set():
            opened_at: float | None = None
            try:
                # Used with ``with`` from the moment it opens (websockets deprecates anything
                # else), so leaving the block, a ``break`` included, closes it.
                with connect(
                    self.url, additional_headers={"Authorization": f"Bearer {self.api_key}"},
                    user_agent_header=f"flowdeck-agent/{__version__}", open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval, ping_timeout=self.ping_timeout, close_timeout=2,
                ) as sock:
                    with self._lock:
                        self._socket = sock
                    if self._stop.is_set():  # close() ran while we connected
                        break
                    opened_at = time.monotonic()
                    self.connections += 1
                    for raw in sock:
                        # Connected once the server speaks (its hello): a socket it accepts and
                        # closes at once (a refused key) never counts as connected.
                        self._set_state(LiveState(True))
                        notice = parse_message(raw)
                        if notice is not None:
                            self._notify(notice)
                reason = self._closed_reason(sock.close_code, sock.close_reason)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                reason = self._closed_reason(code, exc.rcvd.reason if exc.rcvd is not None else "")
            except InvalidStatus as exc:
                status = exc.response.status_code
                reason = {404: "the server has no live endpoint (HTTP 404)",
                          401: "the server refused the agent's key (HTTP 401)",
                          403: "the server refused the connection (HTTP 403)"}.get(status, f"HTTP {status}")
            except InvalidURI as exc:
                self._set_state(LiveState(False, f"invalid live URL: {exc}"))
                return
            except (InvalidHandshake, OSError, TimeoutError) as exc:
                reason = self._error_reason(exc)
            except Exception as exc:  # a bug: never let it kill the agent, just keep polling
                logger.exception("The live connection failed")
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    self._socket = None
            if self._stop.is_set():
                break
            if opened_at is not None and time.monotonic() - opened_at >= self.stable_after:
                self.backoff.reset()
            delay = self.backoff.next()
            self._set_state(LiveState(False, reason))
            logger.debug("Live connection down (%s); reconnecting in %.2fs", reason, delay)
            self._stop.wait(delay)
        self.state = LiveState(False, "closed")

    @staticmethod
    def _closed_reason(code: int | None, text: str | None) -> str:
        code = 1006 if code is None else code
        known = CLOSE_REASONS.get(code, f"closed by the server (code {code})")
        return f"{known}: {text}" if text and code not in (1000, 1001, 1006) else known

    @staticmethod
    def _error_reason(exc: BaseException) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return "cannot reach the server (connection refused)"
        if isinstance(exc, TimeoutError):
            return "cannot reach the server (timed out)"
        text = str(exc) or type(exc).__name__
        return f"cannot reach the server ({text})"
