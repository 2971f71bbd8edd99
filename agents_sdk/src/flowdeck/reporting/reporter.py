"""The flow-run process's link to the server: states, logs and heartbeats of one run attempt.

:class:`RunReporter` is the :class:`~flowdeck.engine.observer.RunObserver` a FlowRunner gets when it
runs under an agent. Reporting costs the calling thread one tuple appended to a queue; a sender
thread turns the queue into combined reports (``flow-runs/{id}/report/``): what is pending — task-run
states, then log lines, and the flow state that follows them — goes in one request with its own
idempotency key, with a heartbeat when one is due. So RUNNING goes out with the first heartbeat,
and the final state with the last task states and logs. A server without the combined endpoint
(404/405) gets the same parts from then on through the separate endpoints. When the server cannot
be reached the batches go to a spool directory and are sent again, in order and with the same
keys, once it answers: every report arrives exactly once. A heartbeat thread keeps the run's lease
while no report carries a heartbeat (a quiet stretch) and learns about cancellation. A 409 (the
attempt is over, the run is no longer ours) aborts the reporter: it drops what is left and
``cancel_requested()`` becomes true so the FlowRunner stops; with ``on_stale`` (the flow-run process
passes :func:`end_process_group`) the work stops at once instead — a stale attempt must not go on
running a task while its retry runs elsewhere.

A task with limited tags may run its code only once the server has accepted its RUNNING (it holds
the tags' slots then): :meth:`RunReporter.propose_task_running` sends that report in order with
everything queued before it and waits for the server's answer, which may be WAIT. The task runner
finds the reporter of its flow run through :func:`flowdeck.engine.task_runner.slot_gate`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from flowdeck.client import (
    AuthenticationError,
    Client,
    ConflictError,
    FlowdeckError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnavailableError,
)
from flowdeck.client.retry import backoff_delay
from flowdeck.reporting import batches as b
from flowdeck.reporting.log_handler import ReporterLogHandler
from flowdeck.reporting.spool import Spool

logger = logging.getLogger("flowdeck.reporting")

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
# The server put the run in these before this process started; the process reports from RUNNING on.
NOT_REPORTED_FLOW_TYPES = frozenset({"PENDING", "SCHEDULED"})
SEQUENCE_BLOCK = 1_000_000_000  # log sequences are attempt * SEQUENCE_BLOCK + n: unique across attempts
DEFAULT_LEASE_SECONDS = 60.0  # the server's flow-run heartbeat lease
_OUTAGE = (ServerUnavailableError, RateLimitedError)
_FATAL = (AuthenticationError, PermissionDeniedError, NotFoundError, PaymentRequiredError, ConflictError)
# The heartbeat thread's first beat waits this long for the RUNNING report to carry it instead.
FIRST_BEAT_GRACE = 2.0
# The exit status of a flow-run process that ended itself because its attempt was over.
STALE_EXIT_CODE = 75


def end_process_group(reason: str) -> None:
    """End this process and every process of its group at once (SIGKILL): the flow-run process's
    answer to learning that its attempt is over. Nothing more is reported (the server refuses it)
    and no task is left to finish. Only a group this process leads is killed (the process agent
    starts each run as a group leader); otherwise just this process exits."""
    try:
        sys.stderr.write(f"Flowdeck: this run attempt is over ({reason}); stopping its processes now.\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110 (a closed stderr must not keep the process alive)
        pass
    group = os.getpgrp()
    if group == os.getpid() and group > 1:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    os._exit(STALE_EXIT_CODE)


class _Answer:
    """The server's answer to one report a caller waits for (see ``propose_task_running``)."""

    __slots__ = ("_event", "value")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.value: dict[str, Any] = {}

    def set(self, value: dict[str, Any]) -> None:
        if not self._event.is_set():
            self.value = value
            self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class _StateLike(Protocol):
    """What the reporter reads from an engine state (``flowdeck.engine.state.State``)."""

    @property
    def server_type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def message(self) -> Any: ...


def result_ref_of(state: Any) -> str:
    """The state's result *reference* (e.g. a LocalResult location), never the value itself."""
    ref = getattr(state, "result_ref", None)
    if isinstance(ref, str) and ref:
        return ref
    location = getattr(getattr(state, "_result", None), "location", None)
    return location if isinstance(location, str) else ""


class RunReporter:
    """Reports one attempt of one flow run to the server (see the module docstring).

    ``spool_dir`` is where batches wait while the server is unreachable (a sub-directory per run
    attempt; default ``$FLOWDECK_HOME/spool``). ``heartbeat_interval`` defaults to a third of the
    lease (``lease_seconds``, the agent's ``--lease``; the server's default when not given); ``None``
    or 0 turns heartbeats off. ``wait_for_running`` makes
    ``flow_state(Running)`` wait until the server has answered the RUNNING proposal (it may say
    WAIT, e.g. while the flow's concurrency limit is full, and the run must not start meanwhile).
    ``on_stale`` is called (from a reporter thread) with the reason when the server says this
    attempt is over (409, ABORT); :func:`end_process_group` stops everything at once.
    """

    def __init__(
        self,
        client: Client,
        flow_run_id: str,
        attempt: int,
        spool_dir: str | Path | None = None,
        *,
        flush_interval: float = 0.25,
        heartbeat_interval: float | None = DEFAULT_LEASE_SECONDS / 3,
        lease_seconds: int | None = None,
        max_task_batch: int = 5_000,
        max_log_batch: int = 1_000,
        retry_interval_max: float = 5.0,
        wait_for_running: bool = True,
        log_task_keys: bool = True,
        start: bool = True,
        on_stale: Callable[[str], None] | None = None,
    ) -> None:
        self.flow_run_id = str(flow_run_id)
        self.attempt = int(attempt)
        # Quick failures: the reporter keeps undelivered batches itself (memory, then disk).
        self._client = client.with_options(retries=2, timeout=min(client.timeout, 15.0), backoff_max=2.0)
        self._hb_client = client.with_options(retries=1, timeout=min(client.timeout, 10.0), backoff_max=2.0)
        if spool_dir is None:
            from flowdeck.config import flowdeck_home

            spool_dir = flowdeck_home() / "spool"
        self.spool_path = Path(spool_dir) / f"{self.flow_run_id}.{self.attempt}"
        self.flush_interval = flush_interval
        self.lease_seconds = lease_seconds
        if lease_seconds and heartbeat_interval == DEFAULT_LEASE_SECONDS / 3:
            heartbeat_interval = lease_seconds / 3
        self.heartbeat_interval = heartbeat_interval or None
        self.max_task_batch = max_task_batch
        self.max_log_batch = max_log_batch
        self.retry_interval_max = retry_interval_max
        self.wait_for_running = wait_for_running
        self.log_task_keys = log_task_keys
        self.on_stale = on_stale

        self.aborted = False
        self.abort_reason: str | None = None
        self.last_flow_answer: dict[str, Any] | None = None
        # Parts are counted whichever way they travel; "reports" counts combined requests.
        self.stats: dict[str, int] = dict.fromkeys(
            ("task_reports", "log_lines", "task_batches", "log_batches", "flow_states", "heartbeats",
             "reports", "spooled_batches", "dropped_batches", "not_accepted_reports"), 0)
        # Whether the server takes combined reports (until a 404/405 says it does not).
        self.combined = True
        self._lease_at: float | None = None  # monotonic time of the last lease extension

        self._lock = threading.Lock()
        self._outbox: deque[b.Item] = deque()
        self._wake_at = max(1, min(max_task_batch, max_log_batch))
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._stop_now = threading.Event()
        self._hb_stop = threading.Event()
        self._running_settled = threading.Event()
        self._cancel = False
        self._closed = False
        self._terminal_sent = False
        self._run_started = False  # the server accepted the flow run's RUNNING from this attempt
        self._last_flow: tuple[str, str] | None = None
        self._pending: deque[b.Batch] = deque()
        self._spool: Spool | None = Spool(self.spool_path) if self.spool_path.is_dir() else None
        self._log_count = self._resume_log_count()
        self._retry_at = 0.0
        self._outage_retries = 0
        self._thread_ids: set[int] = set()
        # Answers callers wait for, by the idempotency key of the batch carrying their report (a
        # spooled batch comes back from disk without them); task runs whose RUNNING was accepted
        # that way (the engine's own RUNNING report for them is not sent again).
        self._waiters: dict[str, dict[int, _Answer]] = {}
        self._started: set[tuple[str, int]] = set()
        self.log_handler: logging.Handler = ReporterLogHandler(self._add_log, self._thread_ids)
        self._sender = threading.Thread(target=self._send_loop, name=f"flowdeck-reporter-{self.flow_run_id[:8]}",
                                        daemon=True)
        self._heartbeat = threading.Thread(target=self._heartbeat_loop,
                                           name=f"flowdeck-heartbeat-{self.flow_run_id[:8]}", daemon=True)
        if start:
            self.start()

    # --- RunObserver (called by the FlowRunner) ------------------------------------------------

    def task_state(self, task_key: str, map_index: int, state: _StateLike) -> None:
        if self._closed:
            return
        if self._started and state.server_type == "RUNNING":
            with self._lock:
                if (task_key, map_index) in self._started:
                    self._started.discard((task_key, map_index))
                    return  # already reported (and accepted) by propose_task_running
        item: b.TaskItem = ("t", task_key, map_index, state.server_type, state.name, state.message,
                            result_ref_of(state))
        with self._lock:
            self._outbox.append(item)
            size = len(self._outbox)
        if size >= self._wake_at:
            self._wake.set()

    def flow_state(self, state: _StateLike) -> None:
        if self._closed:
            return
        state_type, name = state.server_type, state.name
        if state_type in NOT_REPORTED_FLOW_TYPES or (state_type, name) == self._last_flow:
            return
        self._last_flow = (state_type, name)
        item: b.FlowItem = ("f", state_type, name, state.message, result_ref_of(state))
        with self._lock:
            self._outbox.append(item)
        self._wake.set()
        if state_type == "RUNNING" and self.wait_for_running and self._sender.is_alive():
            # The run must not start while the server says WAIT; an unreachable server does not hold it.
            self._running_settled.wait()

    def cancel_requested(self) -> bool:
        return self._cancel

    # --- tag concurrency slots (the task runner's SlotGate) -----------------------------------------

    def propose_task_running(self, task_key: str, map_index: int, state: _StateLike) -> dict[str, Any]:
        """Report ``state`` (RUNNING) for a task run now and wait for the server's answer:
        ``{"status": "ACCEPT"|"WAIT"|"REJECT"|"ABORT", "reason", "details": {...}}``. The report goes
        out in order, after everything queued before it (the task run's earlier states). While the
        server is unreachable this waits (the task must not start without its slots); an aborted or
        closed reporter answers ABORT. Once accepted, the engine's own report of this RUNNING is
        not sent again."""
        answer = _Answer()
        item: b.SyncTaskItem = ("s", task_key, map_index, state.server_type, state.name, state.message,
                                result_ref_of(state), answer)
        with self._lock:
            closed = self._closed
            if not closed:
                self._outbox.append(item)
        if closed:
            return {"status": "ABORT", "reason": self.abort_reason or "The run's reporter is closed.", "details": {}}
        self._wake.set()
        while not answer.wait(0.5):
            if not self._sender.is_alive():
                answer.set({"status": "ABORT", "reason": self.abort_reason or "The run's reporter is not running.",
                            "details": {}})
        if answer.value.get("status") == "ACCEPT":
            with self._lock:
                self._started.add((task_key, map_index))
        return answer.value

    def _answer_all(self, status: str, reason: str) -> None:
        """Answer every waiting caller (the reporter is aborted or closed: nothing more is sent)."""
        with self._lock:
            waiting = [a for by_index in self._waiters.values() for a in by_index.values()]
            self._waiters.clear()
            queued = [item[7] for item in self._outbox if item[0] == "s"]
        for answer in [*waiting, *queued]:
            answer.set({"status": status, "reason": reason, "details": {}})

    # --- logs -----------------------------------------------------------------------------------

    def _resume_log_count(self) -> int:
        """Past the last sequence already spooled by an earlier process of this attempt."""
        if self._spool is None:
            return 0
        highest = 0
        for batch in self._spool.batches():
            lines = batch.payload if batch.kind == "logs" else (
                batch.payload.get("logs") or [] if batch.kind == "report" else [])
            highest = max([highest, *(int(line["sequence"]) - self.attempt * SEQUENCE_BLOCK for line in lines)])
        return max(0, highest)

    def _add_log(self, level: int, created: float, logger_name: str, message: str, task_key: str | None,
                 map_index: int | None) -> None:
        if self._closed:
            return
        with self._lock:
            self._log_count += 1
            sequence = self.attempt * SEQUENCE_BLOCK + self._log_count
            self._outbox.append(("l", sequence, level, created, logger_name, message, task_key, map_index))
            size = len(self._outbox)
        if size >= self._wake_at:
            self._wake.set()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender and (unless turned off) the heartbeat threads."""
        if self._sender.is_alive() or self._closed:
            return
        from flowdeck.engine.task_runner import register_slot_gate

        register_slot_gate(self.flow_run_id, self)
        self._sender.start()
        if self._sender.ident is not None:
            self._thread_ids.add(self._sender.ident)
        if self.heartbeat_interval:
            self._heartbeat.start()
            if self._heartbeat.ident is not None:
                self._thread_ids.add(self._heartbeat.ident)

    def close(self, timeout: float | None = 60.0) -> bool:
        """Flush everything queued and stop. Waits while the server is down, up to ``timeout``
        seconds (None: as long as it takes). True when every report was delivered; False when some
        were not (the time ran out — they stay in the spool directory — or the run was aborted)."""
        self._closed = True
        self._closing.set()
        self._wake.set()
        if self._sender.is_alive():
            self._sender.join(timeout)
        self._stop_now.set()
        self._wake.set()
        self._hb_stop.set()
        self._running_settled.set()
        if self._sender.is_alive():
            self._sender.join(1.0)
        if not self._sender.is_alive() and not self.aborted:
            self._spill_to_disk()  # what could not be delivered in time waits on disk, not in memory
        if self._heartbeat.is_alive():
            self._heartbeat.join(5.0)
        self._unregister()
        self._answer_all("ABORT", self.abort_reason or "The run's reporter closed before the server answered.")
        delivered = not self.aborted and not self._outbox and not self._pending and not self._spool
        if self._spool is not None:
            self._spool.remove_if_empty()
        return delivered

    def __enter__(self) -> RunReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def undelivered(self) -> int:
        """Reports and batches not yet delivered (queued items + formed batches in memory or on disk)."""
        return len(self._outbox) + len(self._pending) + (len(self._spool) if self._spool else 0)

    # --- sender thread --------------------------------------------------------------------------

    def _send_loop(self) -> None:
        self._thread_ids.add(threading.get_ident())
        delay = 0.0
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop_now.is_set():
                return
            try:
                self._form()
                if time.monotonic() >= self._retry_at:
                    self._deliver_all()
            except Exception:  # the sender must survive anything and keep the run's reports
                logger.exception("Flowdeck reporter: unexpected error while sending; retrying")
                self._enter_outage()
            if self.aborted:
                return
            in_outage = self._retry_at > time.monotonic()
            if self._closing.is_set() and not in_outage and not self._outbox and not self._pending \
                    and not self._spool:
                return
            delay = max(0.0, self._retry_at - time.monotonic()) if in_outage else self.flush_interval

    def _form(self) -> None:
        with self._lock:
            if not self._outbox:
                return
            items = list(self._outbox)
            self._outbox.clear()
        for item in items:
            if item[0] == "t":
                self.stats["task_reports"] += 1
            elif item[0] == "l":
                self.stats["log_lines"] += 1
        formed = b.form_reports(items, max_task_batch=self.max_task_batch, max_log_batch=self.max_log_batch,
                                log_task_keys=self.log_task_keys)
        for batch in formed:
            if batch.waiters:
                with self._lock:
                    self._waiters[batch.idempotency_key] = batch.waiters
        if self._spool:  # keep the order: nothing overtakes what already waits on disk
            for batch in formed:
                self._spool.append(batch)
                self.stats["spooled_batches"] += 1
        else:
            self._pending.extend(formed)

    def _spill_to_disk(self) -> None:
        """Write every undelivered report to the spool (only once the sender has stopped)."""
        self._form()
        self._pending_to_spool()

    def _pending_to_spool(self) -> None:
        if self._pending:
            if self._spool is None:
                self._spool = Spool(self.spool_path)
            while self._pending:
                self._spool.append(self._pending.popleft())
                self.stats["spooled_batches"] += 1

    def _deliver_all(self) -> None:
        while not self.aborted and not self._stop_now.is_set():
            spool = self._spool
            from_spool = bool(spool)
            batch = spool.peek() if spool else (self._pending[0] if self._pending else None)
            if batch is None:
                return
            try:
                self._deliver(batch, from_spool=from_spool)
            except _OUTAGE as exc:
                if batch.state_type == "RUNNING":
                    self._running_settled.set()  # do not hold the run while the server is away
                logger.warning("Flowdeck is unreachable (%s); keeping reports on disk in %s", exc, self.spool_path)
                self._enter_outage()
                return
            if self._is_aborted():  # the batch's answer may have ended the attempt
                return
            if from_spool and spool is not None:
                spool.pop()
            elif self._pending:
                self._pending.popleft()
            self._outage_retries = 0

    def _enter_outage(self) -> None:
        """Move every formed batch to disk and wait before the next attempt (growing waits)."""
        self._pending_to_spool()
        self._retry_at = time.monotonic() + backoff_delay(self._outage_retries, base=0.25,
                                                          cap=self.retry_interval_max)
        self._outage_retries += 1

    def _deliver(self, batch: b.Batch, *, from_spool: bool) -> None:
        """Send one batch until the server has it; raises only for an outage (batch kept)."""
        try:
            self._deliver_once(batch, from_spool=from_spool)
        finally:
            # Only now may a RUNNING proposal's caller go on: a refusal (409) has aborted the
            # reporter by now, so the flow does not start.
            if batch.state_type == "RUNNING":
                self._running_settled.set()

    def _deliver_once(self, batch: b.Batch, *, from_spool: bool) -> None:
        try:
            if batch.kind == "report":
                self._send_report(batch, from_spool=from_spool)
            elif batch.kind == "task_runs":  # the kinds below come from a spool older reporters wrote
                self._send_task_runs(batch)
            elif batch.kind == "logs":
                self._send_logs(batch)
                self.stats["log_batches"] += 1
            else:
                self._send_flow_state(batch, from_spool=from_spool)
        except _OUTAGE:
            raise
        except _FATAL as exc:
            self._abort(f"{exc}", stale=isinstance(exc, ConflictError))
        except InvalidRequestError as exc:
            # Too large: send it in halves. A report refused for one of its parts (nothing of it
            # was applied): send its parts one by one, so only the part at fault is dropped.
            split: Callable[[b.Batch], Sequence[b.Batch]] | None = None
            if exc.status == 413 and len(batch) > 1 and batch.kind != "flow_state":
                split = b.split
            elif exc.status == 400 and batch.kind == "report" and len(b.by_part(batch)) > 1:
                split = b.by_part
            if split is None:
                self._drop(batch, exc)
                return
            with self._lock:
                batch.waiters = self._waiters.pop(batch.idempotency_key, {})
            pieces = split(batch)
            for piece in pieces:
                if piece.waiters:
                    with self._lock:
                        self._waiters[piece.idempotency_key] = piece.waiters
            for piece in pieces:
                self._deliver(piece, from_spool=False)
        except FlowdeckError as exc:
            self._drop(batch, exc)

    def _drop(self, batch: b.Batch, exc: Exception) -> None:
        self.stats["dropped_batches"] += 1
        logger.error("Flowdeck refused a %s batch of %d; dropping it: %s", batch.kind, len(batch), exc)
        with self._lock:
            waiting = self._waiters.pop(batch.idempotency_key, {})
        for answer in waiting.values():
            answer.set({"status": "REJECT", "reason": f"Flowdeck refused the report: {exc}", "details": {}})

    def _send_task_runs(self, batch: b.Batch) -> None:
        results = self._client.report_task_runs(self.flow_run_id, attempt=self.attempt, reports=batch.payload,
                                                idempotency_key=batch.idempotency_key)
        self._took_task_runs(batch, results)

    def _took_task_runs(self, batch: b.Batch, results: list[dict[str, Any]]) -> None:
        """Hand the server's answers to the callers waiting for them."""
        self.stats["task_batches"] += 1
        with self._lock:
            waiting = self._waiters.pop(batch.idempotency_key, {})
        for index, answer in waiting.items():
            found = results[index] if index < len(results) and isinstance(results[index], dict) else None
            answer.set(found or {"status": "REJECT", "reason": "The server sent no answer for this report.",
                                 "details": {}})
        refused = [r for r in results if r.get("status") != "ACCEPT"]
        if refused:
            self.stats["not_accepted_reports"] += len(refused)
            logger.debug("Flowdeck did not accept %d task-run report(s): %s", len(refused), refused[:3])

    def _send_logs(self, batch: b.Batch) -> int:
        """Send log lines to the separate endpoint; returns how many were new."""
        if not self.log_task_keys:
            return self._send_lines_without_task_keys(batch)
        try:
            count = self._client.send_logs(self.flow_run_id, batch.payload, idempotency_key=batch.idempotency_key)
        except InvalidRequestError as exc:
            # A server without task_key/map_index on log lines refuses them as unknown fields:
            # send lines without them from now on.
            if exc.status == 400 and _mentions_task_keys(exc.details):
                self.log_task_keys = False
                return self._send_lines_without_task_keys(batch)
            raise
        return count

    def _send_lines_without_task_keys(self, batch: b.Batch) -> int:
        stripped = [{k: v for k, v in line.items() if k not in ("task_key", "map_index")} for line in batch.payload]
        return self._client.send_logs(self.flow_run_id, stripped, idempotency_key=batch.idempotency_key + "-n")

    def _send_flow_state(self, batch: b.Batch, *, from_spool: bool) -> None:
        state: dict[str, Any] = batch.payload
        proposed = state.get("type")
        if proposed in TERMINAL:
            self._terminal_sent = True  # a heartbeat's 409 from now on is the run ending, not an abort
        while True:
            answer = self._client.set_flow_run_state(self.flow_run_id, state, attempt=self.attempt,
                                                     idempotency_key=batch.idempotency_key)
            self.stats["flow_states"] += 1
            if answer.get("status") != "WAIT":
                break
            if not self._wait_as_told(answer, proposed):
                return
            # A new proposal needs a new key: the old one would replay the stored WAIT.
            batch.idempotency_key = str(uuid.uuid4())
            if from_spool and self._spool:
                self._spool.rewrite_head(batch)
        self._took_flow_answer(state, answer, batch.idempotency_key)

    def _wait_as_told(self, answer: dict[str, Any], proposed: Any) -> bool:
        """Wait as a WAIT answer says; False when the reporter is stopping meanwhile."""
        given = answer.get("retry_after_seconds")
        wait = float(given) if isinstance(given, (int, float)) else 5.0
        logger.info("Flowdeck says wait %.0fs before %s (%s)", wait, proposed, answer.get("reason") or "")
        return not self._stop_now.wait(wait)

    def _took_flow_answer(self, state: dict[str, Any], answer: dict[str, Any], key: str) -> None:
        """Act on the server's (final) answer to a proposed flow state."""
        proposed = state.get("type")
        self.last_flow_answer = answer
        status = answer.get("status")
        current = answer.get("state") or {}
        if proposed == "RUNNING" and status == "ACCEPT":
            self._run_started = True
        if status == "ABORT" or (status == "REJECT" and proposed not in TERMINAL):
            self._abort(str(answer.get("reason") or f"the server answered {status} to {proposed}"),
                        stale=status == "ABORT")
        elif current.get("type") in ("CANCELLING", "CANCELLED") and proposed != "CANCELLED":
            self._cancel = True
            if status == "REJECT" and proposed in TERMINAL and current.get("type") == "CANCELLING":
                # The flow ended just as cancellation was requested: confirm the cancellation so
                # the run does not wait in CANCELLING for its lease to run out.
                answer = self._client.set_flow_run_state(
                    self.flow_run_id,
                    {"type": "CANCELLED", "name": "Cancelled",
                     "message": "Cancelled as requested; the flow had just ended "
                                f"({state.get('name') or proposed})."},
                    attempt=self.attempt, idempotency_key=key + "-cancelled")
                self.last_flow_answer = answer
                current = answer.get("state") or {}
        if proposed in TERMINAL or current.get("type") in TERMINAL:
            self._hb_stop.set()

    # --- combined reports -----------------------------------------------------------------------

    def _heartbeat_due(self, batch: b.Batch) -> bool:
        """Whether a report about to be sent for the first time should carry a heartbeat: half an
        interval after the last lease extension (so the heartbeat thread, which beats a whole
        interval after it, stays quiet while reports flow), never with or after the final state."""
        if not (self.heartbeat_interval and self.combined) or self._terminal_sent or "heartbeat" in batch.payload:
            return False
        if batch.state_type in TERMINAL:
            return False
        last = self._lease_at
        return last is None or time.monotonic() - last >= self.heartbeat_interval / 2

    def _send_report(self, batch: b.Batch, *, from_spool: bool) -> None:
        """Send one combined report until the server has it; a WAIT for its flow state is proposed
        again (the state alone, with a new key) after the wait the server asks for."""
        state: dict[str, Any] | None = batch.payload.get("state")
        proposed = state.get("type") if state else None
        if proposed in TERMINAL:
            self._terminal_sent = True  # a heartbeat's 409 from now on is the run ending, not an abort
        while True:
            if not batch.attempted:
                if self._heartbeat_due(batch):
                    batch.payload["heartbeat"] = {} if self.lease_seconds is None else {
                        "lease_seconds": int(self.lease_seconds)}
                batch.attempted = True
            reply = self._post_report(batch)
            self._took_report(batch, reply)
            answer = reply.get("state")
            if state is None or not isinstance(answer, dict):
                return
            if answer.get("status") != "WAIT":
                break
            if not self._wait_as_told(answer, proposed):
                return
            # The other parts are applied; the state is proposed again, with a new key (the
            # old one would replay the stored WAIT).
            batch.payload = {"state": state}
            batch.idempotency_key = str(uuid.uuid4())
            batch.attempted = False
            batch.waiters = {}
            if from_spool and self._spool:
                self._spool.rewrite_head(batch)
        self._took_flow_answer(state, answer, batch.idempotency_key)

    def _post_report(self, batch: b.Batch) -> dict[str, Any]:
        """The server's reply to a report: from the combined endpoint, or (a server without it)
        put together from the separate endpoints, each part with a key derived from the report's."""
        parts: dict[str, Any] = batch.payload
        if self.combined and not batch.separate:
            try:
                reply = self._client.flow_run_report(
                    self.flow_run_id, attempt=self.attempt, heartbeat="heartbeat" in parts,
                    lease_seconds=(parts.get("heartbeat") or {}).get("lease_seconds"),
                    task_runs=parts.get("task_runs"), logs=parts.get("logs"), state=parts.get("state"),
                    idempotency_key=batch.idempotency_key)
            except (NotFoundError, InvalidRequestError) as exc:
                if exc.status not in (404, 405):
                    raise
                # An older server: nothing was applied. Send the parts separately from now on (a
                # run that is really gone is refused there too).
                logger.info("This Flowdeck server takes no combined reports (HTTP %s); sending their parts "
                            "separately", exc.status)
                self.combined = False
            else:
                self.stats["reports"] += 1
                return reply
        batch.separate = True
        if self._spool and self._spool.peek() is batch:
            self._spool.rewrite_head(batch)  # a re-send after a crash goes the same way
        key = batch.idempotency_key
        reply = {}
        if "heartbeat" in parts:
            reply["heartbeat"] = self._client.flow_run_heartbeat(
                self.flow_run_id, attempt=self.attempt, lease_seconds=parts["heartbeat"].get("lease_seconds"),
                idempotency_key=key + "-h")
        if parts.get("task_runs"):
            reply["task_runs"] = {"results": self._client.report_task_runs(
                self.flow_run_id, attempt=self.attempt, reports=parts["task_runs"], idempotency_key=key + "-t")}
        if parts.get("logs"):
            reply["logs"] = {"count": self._send_logs(b.Batch("logs", parts["logs"], key + "-l"))}
        if parts.get("state") is not None:
            reply["state"] = self._client.set_flow_run_state(self.flow_run_id, parts["state"], attempt=self.attempt,
                                                             idempotency_key=key + "-s")
        return reply

    def _took_report(self, batch: b.Batch, reply: dict[str, Any]) -> None:
        """Count the parts the server took and act on their answers (all but the flow state's)."""
        parts = batch.payload
        beat = reply.get("heartbeat")
        if "heartbeat" in parts and isinstance(beat, dict):
            self._took_heartbeat(beat)
        if parts.get("task_runs"):
            found = reply.get("task_runs")
            results = found.get("results") if isinstance(found, dict) else None
            self._took_task_runs(batch, list(results) if isinstance(results, list) else [])
        if parts.get("logs"):
            self.stats["log_batches"] += 1
        if parts.get("state") is not None:
            self.stats["flow_states"] += 1

    def _took_heartbeat(self, reply: dict[str, Any]) -> None:
        self.stats["heartbeats"] += 1
        self._lease_at = time.monotonic()
        if reply.get("cancellation_requested"):
            self._cancel = True

    def _is_aborted(self) -> bool:
        return self.aborted

    def _abort(self, reason: str, *, stale: bool = False) -> None:
        """The server says this attempt is over: stop reporting, drop what is left, stop the run
        (``stale``: the run moved on without this attempt — ``on_stale`` ends the work at once)."""
        if not self.aborted:
            logger.warning("Flowdeck: this run attempt is over (%s); stopping it", reason)
        if stale and self.on_stale is not None and self._run_started:
            self.on_stale(reason)  # before the run started nothing runs: the graceful stop suffices
        self.aborted = True
        self.abort_reason = reason
        self._cancel = True
        self._closed = True
        self._unregister()
        self._answer_all("ABORT", reason)  # before the queue is dropped: it may hold waiting reports
        with self._lock:
            self._outbox.clear()
        self._pending.clear()
        if self._spool is not None:
            self._spool.clear()
            self._spool = None
        self._hb_stop.set()
        self._running_settled.set()

    def _unregister(self) -> None:
        from flowdeck.engine.task_runner import register_slot_gate

        register_slot_gate(self.flow_run_id, self, remove=True)

    # --- heartbeat thread -----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        """Keep the lease while no report carries a heartbeat: beat a whole interval after the last
        extension (a report's or this thread's). The first beat waits a moment for the RUNNING
        report, which carries it; the claim's lease covers the run until then."""
        self._thread_ids.add(threading.get_ident())
        interval = float(self.heartbeat_interval or DEFAULT_LEASE_SECONDS / 3)
        due = time.monotonic() + min(interval, FIRST_BEAT_GRACE)
        while not self._hb_stop.is_set():
            last = self._lease_at
            if last is not None:
                due = max(due, last + interval)
            left = due - time.monotonic()
            if left > 0:
                self._hb_stop.wait(left)
                continue
            try:
                reply = self._hb_client.flow_run_heartbeat(self.flow_run_id, attempt=self.attempt,
                                                           lease_seconds=self.lease_seconds)
            except _OUTAGE as exc:
                logger.warning("Flowdeck heartbeat failed (%s); will try again", exc)
            except _FATAL as exc:
                if not (self._terminal_sent or self._hb_stop.is_set()):
                    self._abort(f"{exc}", stale=isinstance(exc, ConflictError))
                return
            except FlowdeckError as exc:
                logger.error("Flowdeck heartbeat refused: %s", exc)
            else:
                self._took_heartbeat(reply)
            due = time.monotonic() + interval


def _mentions_task_keys(details: Any) -> bool:
    text = repr(details)
    return "task_key" in text or "map_index" in text


class DirectSlotGate:
    """The slot gate of a process that runs tasks without the run's reporter (a worker of a process
    pool, started by the flow-run process): it proposes a task run's RUNNING itself, with the run's
    ``FLOWDECK_*`` environment, and returns the server's answer. The reporter in the flow-run
    process later forwards the same RUNNING, which changes nothing."""

    def __init__(self, client: Client, flow_run_id: str, attempt: int) -> None:
        self.flow_run_id = flow_run_id
        self.attempt = attempt
        self._client = client.with_options(retries=2, timeout=min(client.timeout, 15.0), backoff_max=2.0)

    @classmethod
    def from_env(cls, flow_run_id: str, environ: Any = None) -> DirectSlotGate | None:
        """A gate for ``flow_run_id`` when this process's environment is that run's, else None."""
        env = os.environ if environ is None else environ
        if env.get("FLOWDECK_FLOW_RUN_ID") != flow_run_id or not env.get("FLOWDECK_API_KEY"):
            return None
        try:
            attempt = int(env.get("FLOWDECK_ATTEMPT") or 1)
        except ValueError:
            return None
        return cls(Client(), flow_run_id, attempt)

    def propose_task_running(self, task_key: str, map_index: int, state: _StateLike) -> dict[str, Any]:
        report = {"task_key": task_key, "map_index": map_index,
                  "state": b.state_payload(state.server_type, state.name, state.message, result_ref_of(state))}
        key = str(uuid.uuid4())
        outages = 0
        while True:
            try:
                results = self._client.report_task_runs(self.flow_run_id, attempt=self.attempt, reports=[report],
                                                        idempotency_key=key)
            except _OUTAGE as exc:  # the task must not start without its slots: wait for the server
                logger.warning("Flowdeck is unreachable (%s); the task waits for its concurrency slot", exc)
                time.sleep(backoff_delay(outages, base=0.25, cap=5.0))
                outages += 1
                continue
            except ConflictError as exc:
                return {"status": "ABORT", "reason": str(exc), "details": {}}
            except FlowdeckError as exc:
                return {"status": "REJECT", "reason": str(exc), "details": {}}
            found = results[0] if results and isinstance(results[0], dict) else None
            return found or {"status": "REJECT", "reason": "The server sent no answer for this report.", "details": {}}

    def cancel_requested(self) -> bool:
        return False
