"""What the agent shows while it works.

On a terminal: a live ``rich`` panel (the agent, its health and last heartbeat, whether work is
pushed to it over the live connection or it is polling and why, the runs in flight with their state
and age) with log lines scrolling above it. Anywhere else (a service, a container,
a pipe): plain structured log lines, one event per line, as ``key=value`` pairs or JSON, so log
collectors can parse them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from flowdeck.agent.base import Agent, RunHandle

logger = logging.getLogger("flowdeck.agent")

# Attributes every LogRecord has: anything else on a record is a structured field (``extra=``).
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' "=\n\t\\'):
        return text
    return json.dumps(text)


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=info logger=flowdeck.agent msg="…" key=value …`` — one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        parts = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            parts["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in parts.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run_state(handle: RunHandle) -> str:
    """What the agent knows of a run in flight (the server holds its real state)."""
    if handle.killed:
        return "killed"
    if handle.cancel_requested_at is not None:
        return "cancelling"
    return "running"


class AgentStatus:
    """Receives the agent's events. This base shows nothing; see :class:`LogStatus` and :class:`LiveStatus`."""

    def starting(self, step: str) -> None:
        """A start-up step began (before the agent is registered), e.g. "registering with <url>"."""

    def registered(self, agent: Agent) -> None:
        """The agent registered."""

    def heartbeat(self, agent: Agent) -> None:
        """A heartbeat was answered."""

    def run_started(self, handle: RunHandle) -> None:
        """A claimed run was launched."""

    def run_finished(self, handle: RunHandle, outcome: str, detail: str) -> None:
        """A launched run's process ended; ``outcome`` is what the agent concluded."""

    def event(self, name: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
        """Anything else worth showing (a failed heartbeat, a cancellation, the shutdown…)."""

    def refresh(self, agent: Agent) -> None:
        """Called every watch tick: redraw if the display is live."""

    def close(self) -> None:
        """The agent stopped."""


class LogStatus(AgentStatus):
    """Structured log lines (the formatter chosen by :func:`configure_logging` renders them)."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logger

    def _emit(self, level: int, event: str, message: str, **fields: Any) -> None:
        self.log.log(level, message, extra={"event": event, **fields})

    def registered(self, agent: Agent) -> None:
        self._emit(logging.INFO, "registered", f"Agent {agent.name} registered", agent_id=agent.agent_id,
                   agent_name=agent.name, agent_type=agent.agent_type, labels=",".join(agent.labels),
                   max_runs=agent.max_concurrent_runs, live=agent.live_state)

    def heartbeat(self, agent: Agent) -> None:
        self._emit(logging.DEBUG, "heartbeat", "Heartbeat", health=agent.health, in_flight=len(agent.in_flight),
                   live=agent.live_state)

    def run_started(self, handle: RunHandle) -> None:
        run = handle.run
        warm = getattr(handle, "warm", None)  # the process agent says whether a warm process took it
        extra = {} if warm is None else {"warm": bool(warm)}
        self._emit(logging.INFO, "run_started", f"Started flow run {run.name}", flow_run_id=run.id,
                   flow_run_name=run.name, attempt=run.attempt, **extra)

    def run_finished(self, handle: RunHandle, outcome: str, detail: str) -> None:
        run = handle.run
        level = logging.INFO if outcome in ("exited", "CANCELLED") else logging.WARNING
        self._emit(level, "run_finished", f"Flow run {run.name} ended: {detail}", flow_run_id=run.id,
                   attempt=run.attempt, outcome=outcome, duration_s=round(handle.age, 3))

    def event(self, name: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
        self._emit(level, name, message, **fields)


class LiveStatus(LogStatus):
    """A live panel (the agent, its health, the runs in flight) redrawn every watch tick; the events
    are logged as with :class:`LogStatus` and scroll above it (``configure_logging(live=True)``)."""

    def __init__(self, console: Console | None = None, log: logging.Logger | None = None) -> None:
        super().__init__(log)
        self.console = console or Console()
        self.agent: Agent | None = None
        self.live = Live(console=self.console, auto_refresh=False, transient=False, redirect_stderr=False)
        self.live.start()

    def starting(self, step: str) -> None:
        # Until the panel has an agent to show, say which start-up step the agent is on (a server
        # that does not answer yet leaves "registering with …" on screen, not an empty terminal).
        if self.agent is None:
            self.live.update(Text.assemble(("Starting the agent: ", "bold"), step, "…"), refresh=True)

    def registered(self, agent: Agent) -> None:
        super().registered(agent)
        self.refresh(agent)

    def heartbeat(self, agent: Agent) -> None:
        super().heartbeat(agent)
        self.refresh(agent)

    def refresh(self, agent: Agent) -> None:
        self.agent = agent
        self.live.update(self.render(agent), refresh=True)

    def render(self, agent: Agent) -> RenderableType:
        beat = "never"
        if agent.last_heartbeat_at is not None:
            beat = f"{_age(time.time() - agent.last_heartbeat_at)} ago"
        health_style = {"healthy": "green", "unreachable": "red", "unhealthy": "yellow"}.get(agent.health, "cyan")
        header = Text.assemble(
            (agent.name, "bold"), f"  {agent.agent_type}  labels: {', '.join(agent.labels) or '(none)'}\n",
            "health: ", (agent.health, health_style), f"   last heartbeat: {beat}",
            f"   runs: {len(agent.in_flight)}/{agent.max_concurrent_runs}   polls: {agent.polls}\n",
            "live: ", (agent.live_state, "green" if agent.live_state == "connected" else "yellow"),
        )
        runs = Table(expand=True, box=None, show_edge=False)
        for column in ("flow run", "id", "attempt", "state", "age"):
            runs.add_column(column)
        for handle in list(agent.in_flight.values()):
            run = handle.run
            runs.add_row(run.name, run.id[:8], str(run.attempt), run_state(handle), _age(handle.age))
        if not agent.in_flight:
            runs.add_row(Text("no runs in flight", style="dim"), "", "", "", "")
        return Panel(Group(header, runs), title="flowdeck agent", border_style=health_style)

    def close(self) -> None:
        if self.agent is not None:
            self.refresh(self.agent)
        self.live.stop()


def configure_logging(
    *, live: bool, log_format: str = "logfmt", level: int = logging.INFO, stream: IO[str] | None = None,
    console: Console | None = None,
) -> None:
    """Route ``flowdeck.*`` logs: through rich above the live panel, or as structured lines."""
    root = logging.getLogger("flowdeck")
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if live:
        handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def make_status(*, live: bool, console: Console | None = None) -> AgentStatus:
    return LiveStatus(console) if live else LogStatus()
