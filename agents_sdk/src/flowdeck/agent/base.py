"""The agent loop, whatever launches the runs (a local process, a container, a Kubernetes Job).

An agent registers, then cycles: heartbeat (``polled=True``: the claim loop itself is alive), stop
the runs whose cancellation was requested, look at the runs it launched, claim as many due runs as
it has free slots, and launch each. Between cycles it waits on an event, not a sleep: the live
connection (:mod:`flowdeck.agent.live`) wakes it when the server says work is available (it claims
at once, or sets a timer for a scheduled run's start) or a held run is cancelled (it stops the run
at once); while that socket is down the poll interval alone drives it. A launched run reports its
own states (the flow-run process); the agent only speaks for a run when that process cannot: it
never started (``FAILED`` with the error), it died without reaching a final state (``CRASHED``; the
server retries it per the flow's crash policy), or it was killed on cancellation (``CANCELLED``).
Each heartbeat names the runs the agent is running; a run the server says it no longer holds (its
lease ran out and the run was retried, or another agent has it) has its process stopped at once —
SIGTERM, then SIGKILL after ``STALE_KILL_GRACE`` — and nothing is reported for it: that attempt is
over.

Subclasses implement :meth:`Agent.launch` and return a :class:`RunHandle`; everything else (the
protocol, back-off, concurrency, shutdown) lives here.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import signal
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

from flowdeck import __version__
from flowdeck.client.errors import (
    AuthenticationError,
    FlowdeckError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnavailableError,
)

if TYPE_CHECKING:
    from flowdeck.agent.live import LiveConnection, Notice
    from flowdeck.agent.status import AgentStatus
    from flowdeck.client import Client

logger = logging.getLogger("flowdeck.agent")

# The server refuses a message longer than this (StateIn.message).
MAX_STATE_MESSAGE = 10_000
# A timed claim (a scheduled run's start) that finds nothing is tried again after these delays: the
# server's clock may be a little behind ours, or the run's commit a little late.
TIMER_RETRIES = (0.05, 0.1, 0.25, 0.5, 1.0)
# Timers for scheduled runs kept at most (the poll covers anything beyond).
MAX_TIMERS = 10_000
# How long a process of a run the agent no longer holds may take to stop after SIGTERM before
# it is killed (it usually ends itself first: its own reports are refused with 409).
STALE_KILL_GRACE = 1.0
# A fatal answer: the key is wrong or not allowed. Retrying cannot help; an operator must act.
FATAL_ERRORS: tuple[type[FlowdeckError], ...] = (AuthenticationError, PermissionDeniedError, PaymentRequiredError)


class LaunchError(Exception):
    """The run could not be started at all (bad storage, missing image, unusable run config…).
    The agent reports the run ``FAILED`` with this message: retrying it as is would fail again."""


class FatalAgentError(Exception):
    """The agent cannot go on (its key was refused); it shuts down and exits non-zero."""


# Runs due within this many seconds are claimed (and their processes started) ahead of time, and
# a pushed scheduled start wakes the loop this much early, so the flow starts on the dot.
CLAIM_LOOKAHEAD_SECONDS = 2
TIMER_LEAD_SECONDS = 1.0


def _seconds_until_start(record: Mapping[str, Any], lease_seconds: int) -> float:
    """How long after the claim the run's scheduled start is, by the server's clock: the claim
    answered at (lease end − lease)."""
    try:
        scheduled = dt.datetime.fromisoformat(str(record["scheduled_start"]))
        lease_end = dt.datetime.fromisoformat(str(record["lease_expires_at"]))
    except (KeyError, ValueError):
        return 0.0
    return (scheduled - (lease_end - dt.timedelta(seconds=lease_seconds))).total_seconds()


@dataclass(frozen=True)
class ClaimedRun:
    """A run this agent claimed, with what it takes to start it (the claim record)."""

    id: str
    name: str
    attempt: int
    flow_id: str
    flow_version_id: str
    parameters: dict[str, Any]
    labels: list[str]
    storage: dict[str, Any]
    run_config: dict[str, Any]
    task_runs: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)

    # When the flow may start, on this host's clock (None: at once). A run claimed ahead of its
    # scheduled start waits for it; the delay comes from the server's clock, so skew cancels out.
    start_not_before: float | None = None

    @classmethod
    def from_claim(cls, record: Mapping[str, Any], *, lease_seconds: int | None = None,
                   received_at: float | None = None) -> ClaimedRun:
        version = record.get("version") or {}
        start_not_before = None
        if lease_seconds and received_at is not None:
            delay = _seconds_until_start(record, lease_seconds)
            if delay > 0:
                start_not_before = received_at + min(delay, CLAIM_LOOKAHEAD_SECONDS + 1.0)
        return cls(
            start_not_before=start_not_before,
            id=str(record["id"]),
            name=str(record.get("name") or record["id"]),
            attempt=int(record.get("attempt") or 1),
            flow_id=str(record.get("flow") or version.get("flow") or ""),
            flow_version_id=str(record.get("flow_version") or version.get("id") or ""),
            parameters=dict(record.get("parameters") or {}),
            labels=list(record.get("labels") or []),
            storage=dict(version.get("storage") or {}),
            run_config=dict(version.get("run_config") or {}),
            task_runs=list(record.get("task_runs") or []),
            raw=dict(record),
        )

    @property
    def env_names(self) -> list[str]:
        """Names of variables the run needs from the agent's environment (values never travel)."""
        names = self.run_config.get("env") or []
        return [str(n) for n in names] if isinstance(names, list) else []

    def launch_record(self, *, lease_seconds: int) -> dict[str, Any]:
        """What the flow-run process needs (``flowdeck.agent.execute`` reads it): small on purpose,
        because the Docker and Kubernetes agents pass it in an environment variable. Of the task
        runs only the completed ones matter: a restarted run does not run them again."""
        done = [
            {
                "task_key": t.get("task_key"),
                "map_index": t.get("map_index", -1),
                "state_name": t.get("state_name") or "Success",
                "result_ref": t.get("result_ref") or "",
            }
            for t in self.task_runs
            if t.get("state_type") == "COMPLETED"
        ]
        return {
            "id": self.id,
            "name": self.name,
            "flow": self.flow_id,
            "flow_version": self.flow_version_id,
            "attempt": self.attempt,
            "parameters": self.parameters,
            "labels": self.labels,
            "storage": self.storage,
            "run_config": self.run_config,
            "task_runs": done,
            "lease_seconds": lease_seconds,
            # ``flowdeck.context.scheduled_start_time`` in the run, as Prefect 1 gives it.
            "scheduled_start": self.raw.get("scheduled_start"),
            "start_not_before": self.start_not_before,
        }


@dataclass(frozen=True)
class RunExit:
    """How a launched run's process (container, Job) ended.

    ``code`` is the exit code (``None`` when unknown), ``signal`` the signal that killed it, if any.
    ``failed_to_start``: the platform never managed to start the flow-run code (an image that cannot
    be pulled, an invalid pod spec…): reported as a pre-start ``FAILED``, not a crash."""

    code: int | None
    reason: str
    signal: int | None = None
    failed_to_start: bool = False

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.signal is None and not self.failed_to_start


@dataclass(eq=False)
class PendingReport:
    """A state the agent proposes for a run, with the idempotency key every try of it carries."""

    run: ClaimedRun
    state: dict[str, Any]
    idempotency_key: str


class RunHandle(ABC):
    """One launched flow run, as the agent watches it."""

    def __init__(self, run: ClaimedRun) -> None:
        self.run = run
        self.started_at = time.monotonic()
        self.cancel_requested_at: float | None = None  # monotonic time the agent asked it to stop
        self.lost_at: float | None = None  # monotonic time the server said the run is no longer ours
        self.killed = False
        self.shutdown = False  # stopped because the agent shut down

    @abstractmethod
    def poll(self) -> RunExit | None:
        """``None`` while the run's process is alive, its :class:`RunExit` once it ended."""

    def terminate(self) -> None:
        """Ask the run to stop (it ends itself ``Cancelled`` when it can). Default: kill it."""
        self.kill()

    @abstractmethod
    def kill(self) -> None:
        """Stop the run's process (and its children) at once."""

    def cleanup(self) -> None:  # noqa: B027 (optional hook)
        """Release what the launch created (temporary files, the container…). Called once."""

    def output_tail(self) -> str:
        """The last lines the run printed, for the crash message (empty when not available)."""
        return ""

    @property
    def age(self) -> float:
        return time.monotonic() - self.started_at


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def default_agent_name(agent_type: str) -> str:
    """``<hostname>-<type>``: stable across restarts, so a restarted agent re-registers as itself."""
    return f"{socket.gethostname()}-{agent_type}"


def _clip(text: str, limit: int = MAX_STATE_MESSAGE) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


class Agent(ABC):
    """Claims due runs for its labels and launches them; see the module docstring.

    Args:
        client: the API client, with an Agent-role service-account key.
        name: the agent's name in the workspace (default ``<hostname>-<type>``); re-registering
            under the same name returns the same agent.
        labels: the agent runs flow runs whose labels are all among these.
        max_concurrent_runs: how many runs may be in flight at once.
        poll_interval: seconds between claim-loop cycles (heartbeat and claim).
        lease_seconds: the claim's lease (10–3600 s): a claimed run must reach RUNNING within it.
        grace_period: on shutdown, how long in-flight runs may take to finish before they are killed.
        kill_grace: on cancellation, how long a run may take to stop by itself before it is killed.
        env_vars: extra environment variables (name → value) set on every flow run.
        max_polls: stop after this many claim-loop cycles (``None``: run until stopped).
        status: where progress is shown (a live table or structured log lines).
        live: keep a websocket to the server for pushed work and cancellations (polling goes on
            at ``poll_interval`` either way, and is all there is while the socket is down).
    """

    agent_type: ClassVar[str] = ""
    # How often in-flight runs are looked at between cycles (a process exit is cheap to see).
    watch_interval: float = 0.5

    def __init__(
        self,
        client: Client,
        *,
        name: str | None = None,
        labels: Iterable[str] = (),
        max_concurrent_runs: int = 10,
        poll_interval: float = 10.0,
        lease_seconds: int = 60,
        grace_period: float = 30.0,
        kill_grace: float = 10.0,
        env_vars: Mapping[str, str] | None = None,
        max_polls: int | None = None,
        status: AgentStatus | None = None,
        live: bool = True,
    ) -> None:
        if max_concurrent_runs < 1:
            raise ValueError("max_concurrent_runs must be at least 1.")
        if not 10 <= lease_seconds <= 3600:
            raise ValueError("lease_seconds must be between 10 and 3600 (the server's limits).")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive.")
        self.client = client
        self.name = name or default_agent_name(self.agent_type)
        self.labels = sorted(set(labels))
        self.max_concurrent_runs = max_concurrent_runs
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.grace_period = grace_period
        self.kill_grace = kill_grace
        self.env_vars = dict(env_vars or {})
        self.max_polls = max_polls
        if status is None:
            from flowdeck.agent.status import LogStatus

            status = LogStatus()
        self.status = status
        self.agent_id: str | None = None
        self.in_flight: dict[str, RunHandle] = {}
        self.pending_reports: list[PendingReport] = []
        self._unanswered_claim: tuple[str, int] | None = None
        self.polls = 0
        self.consecutive_failures = 0
        self.last_heartbeat_at: float | None = None  # wall clock of the last answered heartbeat
        self.health = "starting"
        self._stop_requests = 0
        self._wake = threading.Event()
        self._fatal: str | None = None
        # Live updates. Only the claim-loop thread reads and writes these; the socket's thread only
        # queues notices and sets ``_wake``.
        self.live_enabled = live
        self.live: LiveConnection | None = None
        self.live_state = "polling (live updates off)" if not live else "polling (not connected yet)"
        self._claim_now = False  # the server said work is available: claim before the next cycle
        self._cycle_now = False  # the socket (re)connected: a full cycle catches what was missed
        self._work_waiting = False  # work was announced while every slot was busy
        self._timers: list[tuple[float, int]] = []  # (wall-clock time, retries so far): timed claims

    # --- what a platform implements ----------------------------------------------------------------

    @abstractmethod
    def launch(self, run: ClaimedRun) -> RunHandle:
        """Start ``run`` on this platform; raise :class:`LaunchError` when it cannot start at all."""

    def start_platform(self) -> None:  # noqa: B027 (optional hook)
        """Called once as the agent starts, before it registers (the process agent starts its warm
        processes here)."""

    def tend(self) -> None:  # noqa: B027 (optional hook)
        """Housekeeping on the claim-loop thread between claims, while the agent is not stopping
        (the process agent replaces the warm processes that were taken or died)."""

    def stop_platform(self) -> None:  # noqa: B027 (optional hook)
        """Called as the agent stops, before in-flight runs are drained, and once more at the very
        end: release what :meth:`start_platform` made. Must be safe to call twice."""

    def check_run_config(self, run: ClaimedRun) -> None:
        """Refuse a run whose run config asks for another kind of agent (as Prefect 1's agents do)."""
        wanted = run.run_config.get("agent_type")
        if wanted and wanted != self.agent_type:
            raise LaunchError(
                f"This flow's run_config asks for a {wanted} agent, but it was claimed by the {self.agent_type} "
                f"agent {self.name!r}. Give the flow labels that only {wanted} agents have, or change its run_config."
            )

    # --- the loop ---------------------------------------------------------------------------------------

    def start(self) -> int:
        """Run until stopped (signal, ``max_polls``, or a fatal error). Returns the exit code:
        0 after a requested shutdown, 1 after a fatal error."""
        try:
            return self._run()
        finally:
            self.stop_platform()

    def _run(self) -> int:
        try:
            self.status.starting(f"starting its {self.agent_type} platform")
            self.start_platform()
            self.status.starting(f"registering with {self.client.api_url}")
            self.register()
            self.start_live()
            next_cycle = time.monotonic()
            while not self._stopping:
                if self._cycle_now or time.monotonic() >= next_cycle:
                    self._cycle_now = self._claim_now = False  # the cycle claims too
                    began = time.monotonic()
                    try:
                        self.cycle()
                    except FatalAgentError:
                        raise
                    except Exception as exc:  # a bad answer or a bug: keep watching the runs, try again later
                        logger.exception("The claim-loop cycle failed")
                        self._note_failure("cycle", exc)
                    if self.max_polls is not None and self.polls >= self.max_polls:
                        break
                    next_cycle = began + self._cycle_delay()
                elif self._claim_now or self._timer_due():
                    try:
                        self.claim_pushed_work()
                    except FatalAgentError:
                        raise
                    except Exception as exc:
                        logger.exception("Claiming announced work failed")
                        self._note_failure("claim", exc)
                self._sleep_until(next_cycle, for_work=True)
        except FatalAgentError as exc:
            self._fatal = str(exc)
            self.status.event("fatal", f"The agent stops: {exc}", logging.ERROR, error=str(exc))
        if self._stop_requests == 0:
            self._stop_requests = 1  # max_polls reached or fatal: a graceful stop
        self.stop_platform()  # no more claims: nothing waits for work any more
        try:
            self._drain()
            self.say_stopped()
        finally:
            self.stop_live()
        self.status.close()
        return 1 if self._fatal else 0

    def register(self) -> None:
        """Register (or re-register) this agent; retry while the server is unreachable."""
        while not self._stopping:
            try:
                agent = self.client.register_agent(
                    self.name, self.agent_type, self.labels, __version__, max(1, round(self.poll_interval))
                )
            except (ServerUnavailableError, RateLimitedError) as exc:
                self._note_failure("register", exc)
                self._sleep_until(time.monotonic() + self._backoff())
                continue
            except FlowdeckError as exc:  # refused (bad key, bad request, unknown workspace): an operator must act
                raise FatalAgentError(f"Registration was refused: {exc}") from exc
            self.agent_id = str(agent["id"])
            self.consecutive_failures = 0
            self.health = str(agent.get("status") or "registered")
            self.status.registered(self)
            return

    def cycle(self) -> None:
        """One claim-loop cycle: heartbeat, cancellations, watch, claim, launch."""
        self.polls += 1
        cancel_ids = self.heartbeat()
        if self.consecutive_failures == 0 and self.pending_reports:
            self.send_pending_reports()
        for run_id in cancel_ids:
            self.cancel(run_id)
        self.watch()
        if not self._stopping and self.consecutive_failures == 0:
            self.claim_and_launch()

    def heartbeat(self, *, polled: bool = True) -> list[str]:
        """Heartbeat (``polled``: the claim loop is alive, not only the process); returns the ids of
        held runs to cancel."""
        assert self.agent_id is not None
        running = [{"id": h.run.id, "attempt": h.run.attempt} for h in self.in_flight.values() if h.lost_at is None]
        try:
            answer = self.client.agent_heartbeat(self.agent_id, polled=polled, flow_runs=running)
        except FATAL_ERRORS as exc:
            raise FatalAgentError(f"The server refused this agent's key: {exc}") from exc
        except NotFoundError as exc:
            # The agent record is gone (deleted by someone): register again under the same name.
            logger.warning("The server no longer knows agent %s (%s); registering again.", self.agent_id, exc)
            self.register()
            return []
        except FlowdeckError as exc:
            self._note_failure("heartbeat", exc)
            return []
        self.consecutive_failures = 0
        self.last_heartbeat_at = time.time()
        self.health = str(answer.get("status") or "healthy")
        self.status.heartbeat(self)
        for run_id in answer.get("lost_flow_run_ids") or []:
            self.stop_lost(str(run_id))
        return [str(i) for i in answer.get("cancel_flow_run_ids") or []]

    def stop_lost(self, run_id: str) -> None:
        """The server says this agent no longer holds ``run_id`` (the attempt it runs is over): stop
        its process now — SIGTERM, and SIGKILL after ``STALE_KILL_GRACE`` (see :meth:`watch`)."""
        handle = self.in_flight.get(run_id)
        if handle is None or handle.lost_at is not None:
            return
        self.status.event("run_lost", f"Flow run {handle.run.name} (attempt {handle.run.attempt}) is no longer "
                          "held by this agent (its lease ran out and it moved on); stopping its process",
                          logging.WARNING, flow_run_id=run_id, attempt=handle.run.attempt)
        handle.lost_at = time.monotonic()
        self._terminate(handle)

    def claim_and_launch(self) -> int:
        """Claim as many due runs as there are free slots and launch them; returns how many were
        claimed (0 also when no slot is free or the claim failed)."""
        free = self.max_concurrent_runs - len(self.in_flight)
        if free <= 0:
            return 0
        assert self.agent_id is not None
        # A claim whose answer was lost is sent again as is (same key, same limit): the server replays
        # the runs it handed out instead of leaving them to expire. Slots only fill through claims, so
        # the earlier limit still fits.
        key, limit = self._unanswered_claim or (str(uuid.uuid4()), min(free, 100))
        try:
            claimed = self.client.claim(self.agent_id, limit=limit, lease_seconds=self.lease_seconds,
                                        lookahead_seconds=CLAIM_LOOKAHEAD_SECONDS, idempotency_key=key)
        except FATAL_ERRORS as exc:
            raise FatalAgentError(f"The server refused this agent's claim: {exc}") from exc
        except (ServerUnavailableError, RateLimitedError) as exc:
            self._unanswered_claim = (key, limit)
            self._note_failure("claim", exc)
            return 0
        except FlowdeckError as exc:
            self._unanswered_claim = None
            self._note_failure("claim", exc)
            return 0
        self._unanswered_claim = None
        received_at = time.time()
        for record in claimed:
            self.start_run(ClaimedRun.from_claim(record, lease_seconds=self.lease_seconds, received_at=received_at))
        return len(claimed)

    def claim_pushed_work(self) -> None:
        """Claim because the server announced work (now, or a timer for a scheduled run went off)
        rather than because the poll interval elapsed."""
        self._claim_now = False
        timers = self._pop_due_timers()
        if self._stopping or self.consecutive_failures:
            return  # the server is failing: the backed-off cycle tries again
        if len(self.in_flight) >= self.max_concurrent_runs:
            self._work_waiting = True  # claim as soon as a slot frees
            return
        if self.claim_and_launch() == 0 and self.consecutive_failures == 0:
            # Nothing to claim yet at a scheduled start: the server's clock or the run's commit
            # may lag ours by a little; look again shortly, a few times.
            for _, tries in timers:
                if tries < len(TIMER_RETRIES):
                    self._add_timer(time.time() + TIMER_RETRIES[tries], tries + 1)

    def start_run(self, run: ClaimedRun) -> None:
        """Launch a claimed run; a launch that fails is the run's pre-start failure."""
        old = self.in_flight.get(run.id)
        if old is not None and old.run.attempt == run.attempt:
            return  # already running this very attempt
        if old is not None:  # an earlier attempt of this run, lost, still has a process: end it first
            del self.in_flight[run.id]
            self._retire(old)
        try:
            self.check_run_config(run)
            handle = self.launch(run)
        except LaunchError as exc:
            self.report_prestart_failure(run, str(exc))
            return
        except Exception as exc:  # a bug or an unexpected platform error: still the run's pre-start failure
            logger.exception("Launching flow run %s failed", run.id)
            self.report_prestart_failure(run, f"The agent could not start the flow run: {type(exc).__name__}: {exc}")
            return
        self.in_flight[run.id] = handle
        self.status.run_started(handle)

    def watch(self) -> None:
        """Look at every in-flight run: finished ones are settled; overdue kills are carried out."""
        now = time.monotonic()
        for run_id, handle in list(self.in_flight.items()):
            try:
                outcome = handle.poll()
            except Exception as exc:  # the platform's API failed: look again next time
                logger.warning("Could not check flow run %s: %s", run_id, exc)
                continue
            if outcome is None:
                if handle.lost_at is not None and not handle.killed and now - handle.lost_at >= STALE_KILL_GRACE:
                    self._kill(handle)
                    continue
                asked = handle.cancel_requested_at
                if asked is not None and not handle.killed and now - asked >= self.kill_grace:
                    logger.info("Flow run %s did not stop within %ss of its cancellation; killing it", run_id,
                                self.kill_grace)
                    self._kill(handle)
                continue
            del self.in_flight[run_id]
            if self._work_waiting:  # a slot is free and announced work waits for one
                self._work_waiting = False
                self._claim_now = True
            try:
                self.settle(handle, outcome)
            finally:
                self._cleanup(handle)

    def settle(self, handle: RunHandle, outcome: RunExit) -> None:
        """Speak for a run whose process ended, when it could not speak for itself."""
        run = handle.run
        if handle.lost_at is not None:
            # Another attempt (or agent) has the run: anything reported for this one is refused.
            self.status.run_finished(handle, "stopped", f"no longer held by this agent ({outcome.reason})")
            return
        if outcome.failed_to_start:
            self.report_prestart_failure(run, outcome.reason)
            self.status.run_finished(handle, "FAILED", outcome.reason)
            return
        if handle.cancel_requested_at is not None:
            # It either ended Cancelled itself (then this is refused as a no-op) or was killed.
            self.propose(run, {"type": "CANCELLED", "name": "Cancelled",
                               "message": "Cancelled on request; the agent stopped the flow-run process."})
            self.status.run_finished(handle, "CANCELLED", outcome.reason)
            return
        if outcome.ok:
            self.status.run_finished(handle, "exited", outcome.reason)
            return
        why = "the agent shut down before it finished" if handle.shutdown else outcome.reason
        message = f"The flow-run process ended without reporting a final state: {why}."
        tail = handle.output_tail()
        if tail:
            message += f"\nLast output:\n{tail}"
        self.propose(run, {"type": "CRASHED", "name": "Crashed", "message": _clip(message)})
        self.status.run_finished(handle, "CRASHED", why)

    def cancel(self, run_id: str) -> None:
        """Stop a run whose cancellation was requested: ask it to stop, then kill it after ``kill_grace``."""
        handle = self.in_flight.get(run_id)
        if handle is None:
            logger.debug("Cancellation requested for flow run %s, which is not running here", run_id)
            return
        if handle.cancel_requested_at is not None:
            return
        self.status.event("cancelling", f"Cancelling flow run {handle.run.name}: stopping its process",
                          flow_run_id=run_id)
        handle.cancel_requested_at = time.monotonic()
        self._terminate(handle)

    # --- reports the agent makes on a run's behalf -----------------------------------------------------

    def report_prestart_failure(self, run: ClaimedRun, message: str) -> None:
        self.status.event("prestart_failed", f"Flow run {run.name} could not start: {message}", logging.ERROR,
                          flow_run_id=run.id, attempt=run.attempt)
        self.propose(run, {"type": "FAILED", "name": "Failed", "message": _clip(message)})

    def propose(self, run: ClaimedRun, state: dict[str, Any]) -> dict[str, Any] | None:
        """Propose ``state`` for the run's attempt. A refusal (the run is already final, or moved on to
        another attempt) is expected and only logged. While the server is unreachable the report is
        kept and sent again each cycle with the same idempotency key, so it is applied exactly once."""
        return self._send_report(PendingReport(run, dict(state), str(uuid.uuid4())))

    def _send_report(self, report: PendingReport) -> dict[str, Any] | None:
        run, state = report.run, report.state
        try:
            answer = self.client.set_flow_run_state(run.id, state, attempt=run.attempt,
                                                    idempotency_key=report.idempotency_key)
        except FATAL_ERRORS as exc:
            raise FatalAgentError(f"The server refused this agent's report: {exc}") from exc
        except (ServerUnavailableError, RateLimitedError) as exc:
            if report not in self.pending_reports:
                self.pending_reports.append(report)
            self.status.event("report_postponed", f"Could not report {state['type']} for flow run {run.name} yet "
                              f"({exc}); will send it again", logging.WARNING, flow_run_id=run.id)
            return None
        except FlowdeckError as exc:
            self.status.event("report_refused", f"Reporting {state['type']} for flow run {run.name} failed: {exc}",
                              logging.ERROR, flow_run_id=run.id)
            return None
        if report in self.pending_reports:
            self.pending_reports.remove(report)
        current = answer.get("state") or {}
        self.status.event(
            "reported", f"Reported {state['type']} for flow run {run.name}: {answer.get('status')} (now "
            f"{current.get('type')} {current.get('name')})", flow_run_id=run.id, attempt=run.attempt,
            proposed=state["type"], answer=answer.get("status"), state_type=current.get("type"),
            state_name=current.get("name"))
        return answer

    def send_pending_reports(self) -> None:
        """Send again, in order, the reports the server could not take earlier."""
        for report in list(self.pending_reports):
            if self._send_report(report) is None and report in self.pending_reports:
                return  # still unreachable: keep the order, try next cycle

    # --- stopping -----------------------------------------------------------------------------------------

    @property
    def _stopping(self) -> bool:
        return self._stop_requests > 0 or self._fatal is not None

    def request_stop(self) -> None:
        """Ask the agent to stop: the first request stops claiming and lets runs finish within
        ``grace_period``; a second one kills them at once. Safe from a signal handler or a thread."""
        self._stop_requests += 1
        self._wake.set()

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM/SIGINT → :meth:`request_stop`. Returns a function restoring the old handlers."""
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: FrameType | None) -> None:
            # No logging here (it could deadlock on the logging lock): the loop logs the shutdown.
            self.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def _drain(self) -> None:
        """Shutdown: no more claims; let in-flight runs finish within the grace period (still
        heartbeating so the agent shows alive), then kill what is left and report it."""
        if self.in_flight:
            self.status.event("draining", f"Shutting down: waiting up to {self.grace_period:g}s for "
                              f"{len(self.in_flight)} flow run(s) to finish", runs=len(self.in_flight),
                              grace_period=self.grace_period)
        else:
            self.status.event("shutdown", "Shutting down")
        deadline = time.monotonic() + self.grace_period
        next_beat = time.monotonic() + self.poll_interval
        while self.in_flight and time.monotonic() < deadline and self._stop_requests < 2 and self._fatal is None:
            self._wake.clear()
            self._watch_until_fatal()
            if self.in_flight and time.monotonic() >= next_beat and self.agent_id is not None:
                next_beat = time.monotonic() + self.poll_interval
                try:
                    for run_id in self.heartbeat(polled=False):  # alive, but no longer claiming
                        self.cancel(run_id)
                    if self.consecutive_failures == 0 and self.pending_reports:
                        self.send_pending_reports()
                except FatalAgentError as exc:
                    self._fatal = str(exc)
            if self.in_flight:
                self._wake.wait(min(self.watch_interval, max(0.0, deadline - time.monotonic())))
                self._wake.clear()
                self._handle_live_notices()
        for handle in list(self.in_flight.values()):
            self.status.event("killing", f"Flow run {handle.run.name} is still running at shutdown; killing it",
                              logging.WARNING, flow_run_id=handle.run.id)
            handle.shutdown = True
            self._kill(handle)
        # Give the killed processes a moment to end, then settle them (CRASHED: the server hands
        # them back to a retry while the flow's crash retries allow).
        reap_deadline = time.monotonic() + 10
        while self.in_flight and time.monotonic() < reap_deadline and self._watch_until_fatal():
            if self.in_flight:
                time.sleep(0.05)
        for handle in list(self.in_flight.values()):
            self._cleanup(handle)
        self.in_flight.clear()
        if self.pending_reports and self._fatal is None:
            self.send_pending_reports()
        for report in self.pending_reports:
            self.status.event("report_lost", f"Could not report {report.state['type']} for flow run "
                              f"{report.run.name} before stopping; the server will crash it when its lease ends",
                              logging.WARNING, flow_run_id=report.run.id)

    def say_stopped(self) -> None:
        """After a clean shutdown (its runs finished or handed back), tell the server, so the agent
        shows stopped at once rather than healthy until its liveness window runs out. Best effort: a
        server that cannot be reached sees it go offline when the window ends, as before."""
        if self.agent_id is None or self._fatal is not None:
            return
        try:
            self.client.agent_stop(self.agent_id)
        except FlowdeckError as exc:
            self.status.event("stop_unreported", f"Could not tell the server this agent stopped ({exc}); it shows "
                              "offline once its heartbeats are missed", logging.WARNING, error=str(exc))
            return
        self.health = "stopped"
        self.status.event("stopped", "Stopped; the server shows this agent as stopped")

    def _watch_until_fatal(self) -> bool:
        """:meth:`watch`, turning a fatal answer into the agent's fatal state; False once fatal."""
        try:
            self.watch()
        except FatalAgentError as exc:
            self._fatal = str(exc)
            return False
        return True

    def _kill(self, handle: RunHandle) -> None:
        handle.killed = True
        try:
            handle.kill()
        except Exception as exc:
            logger.warning("Could not kill flow run %s: %s", handle.run.id, exc)

    def _terminate(self, handle: RunHandle) -> None:
        """Ask a run's process to stop (its kill grace then applies); kill it if asking fails."""
        try:
            handle.terminate()
        except Exception as exc:
            logger.warning("Could not stop flow run %s: %s; killing it", handle.run.id, exc)
            self._kill(handle)

    def _retire(self, handle: RunHandle, timeout: float = 5.0) -> None:
        """Kill the process of an attempt that is over and wait (briefly) for it to end; nothing is
        reported for it."""
        if handle.lost_at is None:
            handle.lost_at = time.monotonic()
        self._kill(handle)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if handle.poll() is not None:
                    break
            except Exception:  # the platform's API failed: the cleanup below still tries
                break
            time.sleep(0.05)
        self.status.run_finished(handle, "stopped", "no longer held by this agent (killed)")
        self._cleanup(handle)

    def _cleanup(self, handle: RunHandle) -> None:
        try:
            handle.cleanup()
        except Exception as exc:
            logger.warning("Could not clean up after flow run %s: %s", handle.run.id, exc)

    # --- timing ---------------------------------------------------------------------------------------------

    def _note_failure(self, what: str, exc: Exception) -> None:
        self.consecutive_failures += 1
        self.health = "unreachable"
        self.status.event(f"{what}_failed", f"{what.capitalize()} failed ({self.consecutive_failures} in a row): "
                          f"{exc}; trying again in {self._backoff():.1f}s", logging.WARNING, error=str(exc),
                          failures=self.consecutive_failures)

    def _backoff(self) -> float:
        """Exponential back-off from the poll interval, capped at 30 s (or the poll interval)."""
        if self.consecutive_failures <= 0:
            return self.poll_interval
        cap = max(30.0, self.poll_interval)
        return float(min(cap, self.poll_interval * 2 ** min(self.consecutive_failures - 1, 10)))

    def _cycle_delay(self) -> float:
        return self._backoff() if self.consecutive_failures else self.poll_interval

    def _sleep_until(self, deadline: float, *, for_work: bool = False) -> None:
        """Wait until ``deadline``, watching in-flight runs meanwhile; a stop request wakes it, and so
        does a pushed cancellation (handled here, at once). ``for_work``: also return as soon as
        there is work to claim (pushed, or a scheduled run's timer is due)."""
        while not self._stopping:
            self.tend()
            self._handle_live_notices()
            if for_work and (self._claim_now or self._cycle_now):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            wait = min(self.watch_interval, remaining)
            if for_work and self._timers:
                until_timer = self._timers[0][0] - time.time()
                if until_timer <= 0:
                    return
                wait = min(wait, until_timer)
            self._wake.wait(wait)
            # Cleared before the flags are read: a notice queued after this wakes the next wait.
            self._wake.clear()
            self._handle_live_notices()
            if self.in_flight and not self._stopping:
                self.watch()
            self.status.refresh(self)

    # --- live updates ---------------------------------------------------------------------------------------

    def start_live(self) -> None:
        """Open the live connection (after registration: the socket is the agent's)."""
        if not self.live_enabled or self.agent_id is None or self.live is not None:
            return
        from flowdeck.agent.live import LiveConnection, client_credentials, websocket_url

        try:
            url, key, workspace = client_credentials(self.client)
            ws_url = websocket_url(url, workspace, self.agent_id)
        except Exception as exc:  # no usable URL: polling only, and say why
            self._live_changed(f"polling (cannot open the live connection: {exc})", connected=False)
            return
        self.live = LiveConnection(ws_url, key, wake=self._wake.set).start()

    def stop_live(self) -> None:
        if self.live is not None:
            self.live.close()
            self.live = None

    def _handle_live_notices(self) -> None:
        """Act on what the live connection received (on the claim-loop thread)."""
        if self.live is None:
            return
        from flowdeck.agent.live import CancelRun, LiveState, WorkAvailable

        notices: list[Notice] = self.live.drain()
        for notice in notices:
            if isinstance(notice, CancelRun):
                self.cancel(notice.flow_run_id)
            elif isinstance(notice, WorkAvailable):
                if notice.labels and not set(notice.labels) <= set(self.labels):
                    continue  # not for us (the server should not send it): the poll would not claim it either
                if notice.at is None or notice.at <= time.time():
                    self._claim_now = True
                else:
                    # Claim a little early: the process starts meanwhile and waits for the start time.
                    self._add_timer(notice.at - TIMER_LEAD_SECONDS, 0)
            elif isinstance(notice, LiveState):
                if notice.connected and self.live_state != "connected" and self.live.connections > 1:
                    self._cycle_now = True  # reconnected: pushes were missed meanwhile
                self._live_changed(notice.text, connected=notice.connected, reason=notice.reason)

    def _live_changed(self, text: str, *, connected: bool, reason: str = "") -> None:
        self.live_state = text
        if connected:
            self.status.event("live_connected", "Live updates connected: work and cancellations are pushed",
                              live="connected")
        else:
            self.status.event("live_disconnected", f"Live updates unavailable ({reason or text}); polling every "
                              f"{self.poll_interval:g}s", logging.WARNING, live="polling", reason=reason or text)

    def _add_timer(self, at: float, tries: int) -> None:
        if any(abs(t - at) < 0.001 for t, _ in self._timers):
            return  # several runs due at the same moment: one claim takes them all
        if len(self._timers) >= MAX_TIMERS:
            return  # far too many: the poll will find these runs
        heapq.heappush(self._timers, (at, tries))

    def _timer_due(self) -> bool:
        return bool(self._timers) and self._timers[0][0] <= time.time()

    def _pop_due_timers(self) -> list[tuple[float, int]]:
        now = time.time()
        due = []
        while self._timers and self._timers[0][0] <= now:
            due.append(heapq.heappop(self._timers))
        return due
