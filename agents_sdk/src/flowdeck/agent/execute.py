"""The flow-run process: ``python -m flowdeck.agent.execute``, started by an agent for one claimed run.

It reads the claim record (a file named by ``FLOWDECK_FLOW_RUN_FILE``, or the JSON itself in
``FLOWDECK_FLOW_RUN_JSON`` for containers), connects with ``FLOWDECK_API_URL``/``KEY``/``WORKSPACE``,
and reports through a :class:`~flowdeck.reporting.RunReporter`: RUNNING first (the server may make it
wait, or tell this attempt to stop), then the flow is loaded from its storage — a flow that cannot be
loaded is reported FAILED with the traceback — and run with the run's parameters. Every task's
result is checkpointed (``FLOWDECK_RESULTS_DIR``; ``FLOWDECK_CHECKPOINTING=false`` turns it off), so
a retried or restarted run does not run again the tasks earlier attempts completed whose results
load here; the others run again (see ``initial_task_states``). A run that completes removes its
default checkpoints. Python logging reaches the server.

Stopping: the reporter's heartbeat learns of a cancellation and the FlowRunner stops submitting tasks
and ends Cancelled. SIGTERM does the same at once (the agent sends it on cancellation); a SIGTERM
the server did not ask for (a container or pod being evicted) ends the run Crashed instead, so the
server retries it. Under the process agent, the process also stops when the agent dies.

Exit status: 0 once everything was delivered (or the server said this attempt is over); 1 when
reports could not be delivered or something unexpected failed — the agent then reports the run
CRASHED if it has no final state.

Warm start (``python -m flowdeck.agent.execute --warm``, :func:`serve_warm`): the process agent keeps
one such process ready per ``--warm-processes``. It imports what a run needs and waits, holding no
lease and no socket, for one JSON line on stdin — the run's complete environment and working
directory — then takes them on and goes on exactly as a fresh process would. It serves that one run
and exits (module state never carries over to another run); an end of input without a line (the
agent stopped or replaced it) ends it with status 0, and so does the agent's death.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow
    from flowdeck.engine.state import State
    from flowdeck.reporting import RunReporter

ENV_RUN_FILE = "FLOWDECK_FLOW_RUN_FILE"
ENV_RUN_JSON = "FLOWDECK_FLOW_RUN_JSON"
ENV_SPOOL_DIR = "FLOWDECK_SPOOL_DIR"
ENV_AGENT_PID = "FLOWDECK_AGENT_PID"
ENV_REPORT_TIMEOUT = "FLOWDECK_REPORT_TIMEOUT"
# The argument that makes this a warm process (see the module docstring).
WARM_ARG = "--warm"
# What a run imports before its flow's code starts (and while its first tasks finish), loaded by a
# warm process while it waits: the SDK, the engine and executors, the client (httpx, and what its
# first request and TLS set-up import) and reporter, storage loading, result checkpoints. Importing
# configures nothing (logging is set up at hand-over, with the run's environment).
WARM_IMPORTS = (
    "flowdeck", "flowdeck.client", "flowdeck.config", "flowdeck.reporting", "flowdeck.reporting.reporter",
    "flowdeck.engine.flow_runner", "flowdeck.engine.state", "flowdeck.engine.results.checkpoint",
    "flowdeck.executors", "flowdeck.tasks.core.function", "flowdeck.storage", "concurrent.futures.thread",
    "runpy", "pkgutil", "ssl", "certifi", "httpx", "httpcore", "encodings.idna", "cloudpickle",
)
# A warm process also loads the CA bundle the client's TLS set-up reads (the slowest part of creating
# a client). The run's client uses it only when the variables choosing the bundle are unchanged and
# no proxy is set (a client given a transport ignores the proxy variables).
TLS_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")
_prepared_tls: list[tuple[Any, tuple[str | None, ...]]] = []
# How long the process waits, after the flow ends, for the server to take every report (it may
# be down for a while: the reports wait in the spool meanwhile).
DEFAULT_REPORT_TIMEOUT = 300.0

logger = logging.getLogger("flowdeck.agent.execute")


class LaunchRecordError(Exception):
    """The claim record is missing or unreadable (the agent's bug, not the flow's)."""


def read_launch_record(environ: Mapping[str, str]) -> dict[str, Any]:
    """The claim record the agent prepared (see ``ClaimedRun.launch_record``)."""
    raw = environ.get(ENV_RUN_JSON)
    source = ENV_RUN_JSON
    if not raw:
        path = environ.get(ENV_RUN_FILE)
        if not path:
            raise LaunchRecordError(f"Neither {ENV_RUN_FILE} nor {ENV_RUN_JSON} is set: this process is meant "
                                    "to be started by a Flowdeck agent.")
        source = path
        try:
            raw = Path(path).read_text()
        except OSError as exc:
            raise LaunchRecordError(f"Cannot read the flow-run record {path}: {exc.strerror}") from None
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LaunchRecordError(f"The flow-run record in {source} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or "id" not in record:
        raise LaunchRecordError(f"The flow-run record in {source} has no run id.")
    return record


def initial_task_states(record: Mapping[str, Any], flow: Flow, *, checkpointing: bool = True) -> dict[Any, State]:
    """What a retried (or restarted) run keeps of earlier attempts: the task runs they completed
    whose results load *here*, as finished states the FlowRunner does not run again.

    A result loads when it was checkpointed (``result_ref``) and the task's, the flow's or the
    default ``CheckpointResult`` reads it on this machine: a results directory on another machine
    is not found, and the task runs again — a retry never fails for want of a result. Each task
    run again is logged with the reason. Parameters take this run's values; skipped tasks have no
    result to load. Mapped children (``map_index`` ≥ 0) are restored one by one under
    ``(key, map_index)``; a finished mapped parent becomes a ``Mapped`` state without children,
    which the FlowRunner maps again over its upstream result, reusing the restored children."""
    from flowdeck.engine import state as states
    from flowdeck.engine.flow_runner import checkpoint_result, task_result

    flow_result = checkpoint_result(flow, checkpointing)
    finished: dict[Any, State] = {}
    again: dict[str, list[tuple[int, str]]] = {}  # task key -> [(map index, why)]
    for task_run in record.get("task_runs") or []:
        key = str(task_run.get("task_key") or "")
        index = task_run.get("map_index", -1)
        if not key or not isinstance(index, int) or isinstance(index, bool):
            continue
        try:
            task = flow.task_by_key(key)
        except KeyError:
            continue  # a task of another version of the flow
        if getattr(task, "_is_parameter", False):
            continue
        name = str(task_run.get("state_name") or "")
        if index == -1 and name == "Mapped" and flow.is_mapped(task):
            finished[key] = states.Mapped(message="Mapped in an earlier attempt.")
            continue
        cls = getattr(states, name, None)
        if not (isinstance(cls, type) and issubclass(cls, states.Success)) or cls is states.Mapped:
            cls = states.Success
        ref = str(task_run.get("result_ref") or "") or None
        done = cls(message="Completed in an earlier attempt.")
        if cls is not states.Skipped:  # a skipped task has no result: nothing to load
            loaded = _load_result(task, task_result(task, flow_result), ref)
            if isinstance(loaded, str):
                again.setdefault(key, []).append((index, loaded))
                continue
            done.result = loaded[0]
        done.result_ref = ref
        finished[key if index == -1 else (key, index)] = done
    if finished or again:
        logger.info("Restored %d task run(s) an earlier attempt completed; %d other completed one(s) run again.",
                    len(finished), sum(len(reasons) for reasons in again.values()))
    for key, reasons in again.items():
        whole = [why for i, why in reasons if i == -1]
        if whole:
            logger.info("Running task %s again: %s", key, whole[0])
        children = [(i, why) for i, why in reasons if i >= 0]
        if children:
            shown = ", ".join(str(i) for i, _ in children[:10]) + (" …" if len(children) > 10 else "")
            logger.info("Running %d mapped child(ren) of %s again (%s): %s", len(children), key, shown,
                        children[0][1])
    return finished


def _load_result(task: Any, handler: Any, ref: str | None) -> tuple[Any] | str:
    """``(value,)`` read from a checkpoint, or why it cannot be (a sentence for the run's logs)."""
    from flowdeck.engine.results.checkpoint import CheckpointResult, is_checkpoint_ref

    if handler is None:
        why = "checkpoint=False" if task.checkpoint is False else "checkpointing is off"
        return f"its result is not checkpointed ({why}), so the earlier attempt's result cannot be restored"
    if not ref:
        return ("the earlier attempt did not checkpoint its result (it could not be pickled or written, or the "
                "attempt ran without checkpointing)")
    if isinstance(handler, CheckpointResult) and not is_checkpoint_ref(ref):
        return f"its result reference {ref!r} is not inside the results directory"
    try:
        return (handler.read(ref).value,)
    except Exception as exc:
        return f"the earlier attempt's result cannot be loaded on this machine: {exc}"


class RunControl:
    """The RunObserver the FlowRunner gets: the reporter, plus this process's own reasons to stop
    (SIGTERM). It tells a requested cancellation from an eviction by asking the server."""

    def __init__(self, reporter: RunReporter, client: Any, flow_run_id: str, attempt: int) -> None:
        self.reporter = reporter
        self.client = client
        self.flow_run_id = flow_run_id
        self.attempt = attempt
        self.terminated = threading.Event()
        self.classified = threading.Event()
        self.cancel_on_server = False

    # --- RunObserver --------------------------------------------------------------------------

    def flow_state(self, state: State) -> None:
        if self.terminated.is_set() and state.server_type == "CANCELLED":
            self.classified.wait(15)
            if not (self.cancel_on_server or self.reporter.cancel_requested()):
                from flowdeck.engine.state import Crashed

                state = Crashed(message="The flow-run process was stopped (SIGTERM) before the flow finished.")
        self.reporter.flow_state(state)

    def task_state(self, task_key: str, map_index: int, state: State) -> None:
        self.reporter.task_state(task_key, map_index, state)

    def cancel_requested(self) -> bool:
        return self.terminated.is_set() or self.reporter.cancel_requested()

    # --- SIGTERM ------------------------------------------------------------------------------

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Only set flags here; a thread asks the server (a request from a signal handler could
        # deadlock on locks the interrupted code holds).
        if self.terminated.is_set():
            return
        self.terminated.set()
        threading.Thread(target=self._classify, name="flowdeck-sigterm", daemon=True).start()

    def _classify(self) -> None:
        try:
            reply = self.client.flow_run_heartbeat(self.flow_run_id, attempt=self.attempt)
            self.cancel_on_server = bool(reply.get("cancellation_requested"))
        except Exception as exc:  # unreachable or refused: treat as not requested
            logger.warning("Could not ask Flowdeck whether the run was cancelled: %s", exc)
        self.classified.set()


_watched_agent: list[int] = []  # the agent this process already watches (a warm process starts early)


def watch_agent(agent_pid: int, interval: float = 0.5) -> threading.Thread | None:
    """Kill this process group when the agent that started it is gone: its runs must not go on
    unseen (the server crashes and retries them once their heartbeats stop). None when this agent
    is already watched."""
    if agent_pid in _watched_agent:
        return None
    _watched_agent.append(agent_pid)

    def watch() -> None:
        while True:
            if os.getppid() != agent_pid:
                try:
                    os.killpg(os.getpgrp(), signal.SIGKILL)
                finally:
                    os._exit(137)
            time.sleep(interval)

    thread = threading.Thread(target=watch, name="flowdeck-agent-watch", daemon=True)
    thread.start()
    return thread


def _configure_logging(reporter_handler: logging.Handler | None = None) -> None:
    # One stderr handler on the root for every logger (the agent captures it into its own log);
    # the flowdeck logger's own stderr handler would print flowdeck records twice.
    os.environ.setdefault("FLOWDECK_LOGGING_STDERR", "0")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for chatty in ("httpx", "httpcore"):  # one line per request would drown the flow's own output
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if not any(getattr(h, "name", None) == "flowdeck-execute" for h in root.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.set_name("flowdeck-execute")
        stream.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s - %(name)s | %(message)s"))
        root.addHandler(stream)
    if reporter_handler is not None:
        root.addHandler(reporter_handler)


def _report_timeout(environ: Mapping[str, str]) -> float:
    try:
        return float(environ.get(ENV_REPORT_TIMEOUT) or DEFAULT_REPORT_TIMEOUT)
    except ValueError:
        return DEFAULT_REPORT_TIMEOUT


def run_flow_run(record: Mapping[str, Any], environ: Mapping[str, str]) -> int:
    """Run one claimed flow run to its end, reporting everything; returns the exit status."""
    from flowdeck.client import Client
    from flowdeck.reporting import RunReporter
    from flowdeck.reporting.reporter import end_process_group

    flow_run_id = str(record["id"])
    attempt = int(environ.get("FLOWDECK_ATTEMPT") or record.get("attempt") or 1)
    client = Client(transport=_prepared_transport())
    # Heartbeats keep the agent's lease: a lost run comes back after it, not after the server's default.
    lease = record.get("lease_seconds")
    # A stale attempt (its run was retried elsewhere) ends at once, with every process it started.
    reporter = RunReporter(client, flow_run_id, attempt, spool_dir=environ.get(ENV_SPOOL_DIR) or None,
                           lease_seconds=int(lease) if lease else None, on_stale=end_process_group)
    _configure_logging(reporter.log_handler)
    control = RunControl(reporter, client, flow_run_id, attempt)
    signal.signal(signal.SIGTERM, control.on_sigterm)
    outcome: dict[str, Any] = {}
    try:
        status = _run(control, record, outcome)
    finally:
        delivered = reporter.close(timeout=_report_timeout(environ))
        client.close()
    if not delivered and not reporter.aborted:
        logger.error("Some reports could not be delivered to Flowdeck (%d left)", reporter.undelivered)
        return 1
    answer = reporter.last_flow_answer or {}
    completed = answer.get("status") == "ACCEPT" and (answer.get("state") or {}).get("type") == "COMPLETED"
    if not reporter.aborted and completed:
        _remove_checkpoints(outcome.get("result"), flow_run_id)
    return status


def _prepare_tls() -> None:
    """Warm phase: the TLS context a client would create now (see ``TLS_VARIABLES``)."""
    import httpx

    _prepared_tls.append((httpx.create_ssl_context(), tuple(os.environ.get(n) for n in TLS_VARIABLES)))


def _prepared_transport() -> Any:
    """A transport on the TLS context the warm process prepared, or None (the client makes its own,
    as in a fresh process): when there is none, the run's CA bundle variables differ, or a proxy is
    set in the environment (httpx reads the ``*_proxy`` variables only without a transport)."""
    if not _prepared_tls:
        return None
    context, chosen_by = _prepared_tls.pop()
    if chosen_by != tuple(os.environ.get(n) for n in TLS_VARIABLES):
        return None
    if any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" and value
           for name, value in os.environ.items()):
        return None
    import httpx

    return httpx.HTTPTransport(verify=context)


def _remove_checkpoints(result: Any, flow_run_id: str) -> None:
    """A run the server took as COMPLETED is never retried nor restarted: its default checkpoints
    are of no more use (a failed, crashed or cancelled run keeps them for its restart)."""
    from flowdeck.engine.results.checkpoint import CheckpointResult

    if isinstance(result, CheckpointResult):
        import shutil

        shutil.rmtree(result.run_dir(flow_run_id), ignore_errors=True)


def _run(control: RunControl, record: Mapping[str, Any], outcome: dict[str, Any] | None = None) -> int:
    from flowdeck.config import checkpointing
    from flowdeck.engine.flow_runner import checkpoint_result
    from flowdeck.engine.state import Cancelled, Failed, Running

    reporter = control.reporter
    control.flow_state(Running(message=f"Running in process {os.getpid()} on {socket.gethostname()}"))
    if reporter.aborted:
        logger.warning("Flowdeck refused to start this attempt: %s", reporter.abort_reason)
        return 0
    try:
        from flowdeck.storage import load_flow

        flow = load_flow(dict(record.get("storage") or {}))
    except BaseException as exc:  # noqa: B036 (a flow file may even call sys.exit)
        text = "".join(traceback.format_exception(exc))
        logger.error("Could not load the flow from its storage %s:\n%s", record.get("storage"), text)
        control.flow_state(Failed(message=_clip(f"Could not load the flow from its storage: {exc}\n{text}")))
        return 0
    _wait_for_start(record, control)
    if control.cancel_requested():
        control.flow_state(Cancelled(message="Cancelled before the flow started."))
        return 0
    checkpoint = checkpointing(default=True)
    try:
        final = flow.run(
            parameters=dict(record.get("parameters") or {}),
            observer=control,
            initial_task_states=initial_task_states(record, flow, checkpointing=checkpoint),
            context={"flow_run_id": str(record["id"]), "flow_run_name": str(record.get("name") or ""),
                     "checkpointing": checkpoint, "running_with_backend": True,
                     # The run's scheduled time, as Prefect 1 gives it (the engine makes it a DateTime).
                     **({"scheduled_start_time": record["scheduled_start"]} if record.get("scheduled_start") else {})},
        )
    except Exception as exc:
        # The engine itself failed (tasks fail into states, not exceptions): the run is FAILED.
        text = "".join(traceback.format_exception(exc))
        logger.error("The flow run failed unexpectedly:\n%s", text)
        control.flow_state(Failed(message=_clip(f"The flow run failed unexpectedly: {exc}\n{text}")))
        return 1
    if outcome is not None and final.server_type == "COMPLETED":
        outcome["result"] = checkpoint_result(flow, checkpoint)
    return 0


def _wait_for_start(record: Mapping[str, Any], control: RunControl) -> None:
    """A run claimed ahead of its scheduled start (the agent's lookahead) starts the flow on time."""
    start = record.get("start_not_before")
    if not isinstance(start, (int, float)):
        return
    while not control.cancel_requested():
        left = float(start) - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def _clip(text: str, limit: int = 10_000) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "\n…\n" + text[-(limit // 2) + 3 :]


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    _configure_logging()
    agent_pid = env.get(ENV_AGENT_PID)
    if agent_pid and agent_pid.isdigit():
        watch_agent(int(agent_pid))
    try:
        record = read_launch_record(env)
    except LaunchRecordError as exc:
        logger.error("%s", exc)
        return 2
    return run_flow_run(record, env)


def serve_warm(stdin_fd: int = 0) -> int:
    """A warm process: import what a run needs, wait for the agent's hand-over line, take on the
    run's environment and working directory, then run it as :func:`main` does (module docstring)."""
    agent_pid = os.environ.get(ENV_AGENT_PID)
    if agent_pid and agent_pid.isdigit():
        watch_agent(int(agent_pid))  # a warm process outlives no agent either
    import importlib

    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional module this installation lacks: the run imports what it needs
            pass
    try:
        _prepare_tls()
    except Exception:  # noqa: S110 (the run's client then sets up TLS itself, and reports any error)
        pass
    line = _read_line(stdin_fd)
    if not line.strip():
        return 0  # the agent stopped or replaced this process before it had work
    try:
        work = json.loads(line)
        env = {str(k): str(v) for k, v in dict(work["env"]).items()}
        cwd = str(work["cwd"])
    except (ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"Flowdeck: the agent's hand-over to this warm flow-run process is unreadable: {exc}\n")
        return 2
    take_over(env, cwd)
    return main()


def _read_line(fd: int) -> bytes:
    """The hand-over line from ``fd`` (the agent writes that one line and closes the pipe), read
    unbuffered, so ``sys.stdin`` holds nothing of it; empty at end of input."""
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def take_over(env: Mapping[str, str], cwd: str) -> None:
    """Become the run's process: exactly its environment (what a fresh process would have got),
    its working directory (also as ``sys.path[0]``, as ``python -m`` started there would have it),
    its arguments, and no input (a fresh process gets /dev/null)."""
    del sys.argv[1:]
    started_in = os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    if sys.path and sys.path[0] == started_in:
        sys.path[0] = os.getcwd()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(serve_warm() if sys.argv[1:] == [WARM_ARG] else main())
