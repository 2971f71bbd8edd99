"""Benchmark: pickup latency, from a run becoming due to the flow's code starting under the agent.

Against a real Flowdeck server (``python -m config.embedded`` in a subprocess, on DATABASE_URL and
REDIS_URL) and a real ``flowdeck agent start`` process (the process agent: each run is a flow-run
process, ``python -m flowdeck.agent.execute``, either a warm one started ahead of the claim with its
imports done, or a new one). The flow has one task that writes ``time.time()`` to a file the run's
parameter names; that is "the flow's code starting".

1. Quick runs, with push (the agent's websocket): BENCH_RUNS runs (50), one after another, each
   created due now through the API, once per BENCH_WARM setting (``--warm-processes`` 1, then 0:
   warm, then cold, each with an agent of its own). Latency = the task's timestamp − the moment just
   before the create request was sent (so it includes the API call). Also split into "created →
   launched by the agent" (the agent's ``run_started`` log line) and "launched → code starts" (the
   flow-run process's start-up: Python and imports when cold, the hand-over when warm, then the
   RUNNING report and loading the flow). Between runs the bench waits for the run to finish and the
   agent's processes to go idle (with warm processes: the replacement has done its imports), so
   each run meets an idle agent and runs do not compete for the 2 cores.
2. The same with polling only (``--no-live``, ``--poll-interval`` BENCH_POLL_INTERVAL, 10 s): the
   run waits for the next poll, so expect about half the interval on average (each run is created
   at a random moment of the poll cycle; this part takes about BENCH_POLL_RUNS × 1.5 intervals).
3. Scheduled runs (push): BENCH_SCHEDULED runs (20) created up front, scheduled 3 s ahead and 1 s
   apart; latency = code start − scheduled start (and agent launch − scheduled start).

Prints median, p99 and max of each. Targets: a quick run's code starts with p99 < 0.3 s with push
and warm processes (issue 12; issue 5 asked < 0.5 s of the cold start); a scheduled run within 0.25 s
of its time. For comparison issue 5 measured Prefect 3's process worker at median 7.7 s, worst 12.5 s.

    DATABASE_URL=postgres://flowdeck_owner@127.0.0.1:5432/flowdeck REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/pickup_latency.py

Knobs: BENCH_RUNS (50), BENCH_POLL_RUNS (same as BENCH_RUNS), BENCH_POLL_INTERVAL (10),
BENCH_SCHEDULED (20), BENCH_MODES (push,poll,scheduled), BENCH_WARM (1,0: the ``--warm-processes``
values measured with push; poll and scheduled use the first). It creates a throw-away workspace and
removes it.
BENCH_AGENT_ARGS: more ``flowdeck agent start`` arguments (e.g. ``--import-path DIR`` to run the flows
under another copy of the SDK, with PYTHONPATH=DIR for the agent).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import runpy
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The servers and workers started here run on PostgreSQL, where the default key is refused
# (core/checks.py): a key for this run unless one is set.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("FLOWDECK_FAST_PASSWORD_HASHER", "1")

from sdk_overhead import _clean_up, _start_server, _workspace  # noqa: E402  (same server and workspace set-up)

RUNS = int(os.environ.get("BENCH_RUNS", "50"))
POLL_RUNS = int(os.environ.get("BENCH_POLL_RUNS", str(RUNS)))
POLL_INTERVAL = float(os.environ.get("BENCH_POLL_INTERVAL", "10"))
SCHEDULED = int(os.environ.get("BENCH_SCHEDULED", "20"))
MODES = os.environ.get("BENCH_MODES", "push,poll,scheduled").split(",")
WARM = [int(n) for n in os.environ.get("BENCH_WARM", "1,0").split(",")]
AGENT_ARGS = shlex.split(os.environ.get("BENCH_AGENT_ARGS", ""))
LABEL = "pickup-bench"

FLOW = textwrap.dedent('''
    import time
    from flowdeck import Flow, Parameter, task


    @task
    def mark(path):
        stamp = time.time()  # the flow's code has started
        with open(path, "w") as f:
            f.write(repr(stamp))


    with Flow("pickup-bench") as flow:
        mark(Parameter("marker"))
''')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"median {statistics.median(values) * 1000:7.1f} ms   p99 {percentile(values, 99) * 1000:7.1f} ms   "
            f"max {max(values) * 1000:7.1f} ms   (n={len(values)})")


class AgentProcess:
    """``flowdeck agent start`` as a subprocess, its JSON log lines in a file."""

    def __init__(self, url: str, key: str, workspace: str, directory: Path, *, live: bool,
                 poll_interval: float, warm: int) -> None:
        self.log_path = directory / f"agent-{'push' if live else 'poll'}-warm{warm}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "DJANGO_", "DATABASE_"))}
        env.update(FLOWDECK_API_URL=url, FLOWDECK_API_KEY=key, FLOWDECK_WORKSPACE=workspace,
                   FLOWDECK_HOME=str(directory / "home"), NO_COLOR="1")
        args = [str(Path(sys.executable).parent / "flowdeck"), "agent", "start", "--label", LABEL, "--name",
                f"bench-{'push' if live else 'poll'}", "--poll-interval", str(poll_interval), "--no-panel",
                "--log-format", "json", "--import-path", str(directory), "--live" if live else "--no-live",
                "--warm-processes", str(warm), *AGENT_ARGS]
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=directory)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a flow-run process's own output
        return out

    def wait_for_event(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            if self.proc.poll() is not None:
                raise SystemExit(f"the agent exited ({self.proc.returncode}); see {self.log_path}")
            time.sleep(0.05)
        raise SystemExit(f"timed out waiting for the agent; see {self.log_path}")

    def launched_at(self) -> dict[str, tuple[float, bool | None]]:
        """flow-run id → when the agent launched it (its ``run_started`` line), and whether warm."""
        return {e["flow_run_id"]: (dt.datetime.fromisoformat(e["ts"]).timestamp(), e.get("warm"))
                for e in self.events() if e.get("event") == "run_started"}

    def settle(self, timeout: float = 10) -> None:
        """Wait until the agent and its processes use no CPU for 150 ms (the run's process ended, the
        replacement warm process finished its imports)."""
        import psutil

        def cpu() -> float:
            total = 0.0
            try:
                root = psutil.Process(self.proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    try:
                        times = p.cpu_times()
                        total += times.user + times.system
                    except psutil.Error:
                        continue
            except psutil.Error:
                pass
            return total

        deadline = time.monotonic() + timeout
        last = cpu()
        while time.monotonic() < deadline:
            time.sleep(0.15)
            now = cpu()
            if now - last < 0.01:
                return
            last = now

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_marker(path: Path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text:
            return float(text)
        time.sleep(0.002)
    raise SystemExit(f"the run did not start within {timeout}s (no {path})")


def quick_runs(developer: Any, flow_id: str, agent: AgentProcess, directory: Path, count: int,
               tag: str, *, show: bool = True, random_phase: float = 0) -> None:
    total, to_launch, to_code, run_ids = [], [], [], []
    created_at: dict[str, float] = {}
    for i in range(count):
        marker = directory / f"{tag}-{i}.mark"
        # Polling: created at a random moment of the poll cycle (one after another, each run would
        # otherwise be created just after the poll that claimed the previous one: a full interval).
        time.sleep(random.uniform(0, random_phase))
        t0 = time.time()
        run = developer.create_flow_run(flow_id, parameters={"marker": str(marker)}, labels=[LABEL])
        started = wait_marker(marker, timeout=POLL_INTERVAL * 3 + 30)
        total.append(started - t0)
        created_at[run["id"]] = t0
        run_ids.append(run["id"])
        # Let the run's process end (and a warm replacement start) before the next one, so runs do
        # not compete for the 2 cores.
        deadline = time.monotonic() + 30
        while developer.get_flow_run(run["id"])["state_type"] not in ("COMPLETED", "FAILED", "CRASHED"):
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run['id']} did not finish")
            time.sleep(0.05)
        agent.settle()
    launched = agent.launched_at()
    warm = 0
    for i, run_id in enumerate(run_ids):
        if run_id in launched:
            at, was_warm = launched[run_id]
            warm += bool(was_warm)
            to_launch.append(at - created_at[run_id])
            to_code.append(total[i] - to_launch[-1])
    if not show:
        return
    print(f"  created → code starts:      {summary(total)}")
    print(f"    created → agent launches: {summary(to_launch)}")
    print(f"    launch → code starts:     {summary(to_code)}")
    print(f"    launched warm:            {warm} of {len(run_ids)}")


def scheduled_runs(developer: Any, flow_id: str, agent: AgentProcess, directory: Path, count: int) -> None:
    base = time.time() + 3
    planned: list[tuple[str, float, Path]] = []
    for i in range(count):
        at = base + i * 1.0
        marker = directory / f"scheduled-{i}.mark"
        run = developer.create_flow_run(flow_id, parameters={"marker": str(marker)}, labels=[LABEL],
                                        scheduled_start=dt.datetime.fromtimestamp(at, dt.UTC).isoformat())
        planned.append((run["id"], at, marker))
    late, launch_late = [], []
    for _run_id, at, marker in planned:
        late.append(wait_marker(marker, timeout=count + 60) - at)
    launched = agent.launched_at()
    for run_id, at, _ in planned:
        if run_id in launched:
            launch_late.append(launched[run_id][0] - at)
    print(f"  code starts − scheduled start:    {summary(late)}")
    print(f"  agent launches − scheduled start: {summary(launch_late)}")


def main() -> None:
    import logging

    from flowdeck.client import Client

    for name in ("httpx", "flowdeck"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("Set DATABASE_URL and REDIS_URL to a migrated PostgreSQL + Redis.")
    created, made = _workspace()
    proc, url = _start_server()
    workspace = created[0].slug
    directory = Path(tempfile.mkdtemp(prefix="pickup-bench-"))
    print(f"pickup latency: embedded server + Redis, process agent, {os.cpu_count()} cores, "
          f"{RUNS} quick runs (push) per --warm-processes in {WARM}, {POLL_RUNS} (polling every "
          f"{POLL_INTERVAL:g}s), {SCHEDULED} scheduled")
    agents: list[AgentProcess] = []
    try:
        (directory / "pickup_bench_flow.py").write_text(FLOW)
        developer = Client(api_url=url, api_key=made["user"], workspace=workspace)
        flow = runpy.run_path(str(directory / "pickup_bench_flow.py"), run_name="__bench__")["flow"]
        metadata = flow.serialize()
        metadata["storage"] = {"type": "file", "path": str(directory / "pickup_bench_flow.py"),
                               "flow_name": "pickup-bench"}
        metadata["labels"] = [LABEL]
        version, _ = developer.register_flow(project="bench", name="pickup-bench", metadata=metadata)
        flow_id = str(version["flow"])

        for n, warm in enumerate(WARM):
            scheduled = "scheduled" in MODES and SCHEDULED and n == 0
            if "push" not in MODES and not scheduled:
                continue
            agent = AgentProcess(url, made["service_account"], workspace, directory, live=True, poll_interval=30,
                                 warm=warm)
            agents.append(agent)
            live = agent.wait_for_event(lambda e: e.get("event") in ("live_connected", "live_disconnected"))
            if live["event"] != "live_connected":
                print(f"  warning: the agent is not connected ({live.get('reason')}); figures are polling's")
            # Warm-up: the first run pays for cold caches (imports, the flow file).
            quick_runs(developer, flow_id, agent, directory, 2, f"warm-up-{warm}", show=False)
            if "push" in MODES:
                print(f"with push (websocket; poll interval 30 s), --warm-processes {warm}:")
                quick_runs(developer, flow_id, agent, directory, RUNS, f"push-{warm}")
            if scheduled:
                print(f"scheduled runs, with push, --warm-processes {warm} ({SCHEDULED} runs, 3 s ahead, 1 s apart):")
                scheduled_runs(developer, flow_id, agent, directory, SCHEDULED)
            agent.stop()
            agents.remove(agent)
        if "poll" in MODES and POLL_RUNS:
            agent = AgentProcess(url, made["service_account"], workspace, directory, live=False,
                                 poll_interval=POLL_INTERVAL, warm=WARM[0])
            agents.append(agent)
            agent.wait_for_event(lambda e: e.get("event") == "registered")
            print(f"polling only (--no-live, poll interval {POLL_INTERVAL:g} s):")
            quick_runs(developer, flow_id, agent, directory, POLL_RUNS, "poll", random_phase=POLL_INTERVAL)
        print("targets: quick run p99 < 300 ms (push, warm processes; issue 12); scheduled within 250 ms of its time")
    finally:
        for agent in agents:
            agent.stop()
        proc.terminate()
        proc.wait(10)
        _clean_up(created)


if __name__ == "__main__":
    main()
