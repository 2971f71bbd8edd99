"""The ledger the fault suite's flows write: what it counts as an execution, an overlap and
concurrency, and that a kill -9 loses nothing already written. (No stack needed.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.faults.ledger import Ledger
from tests.faults.stack import wait_until


def write(ledger: Ledger, *lines: tuple[str, str, str, float]) -> None:
    """(execution id, key, event, t) lines of one task tagged "t"."""
    with ledger.path.open("a") as f:
        for ex_id, key, event, t in lines:
            f.write(json.dumps({"id": ex_id, "task": "work", "key": key, "tags": ["t"], "pid": 1, "event": event,
                                "t": t, **({"outcome": "ok"} if event == "end" else {})}) + "\n")


def test_counts_overlaps_and_concurrency(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl", alive_every=0.25)
    write(ledger,
          ("a", "1", "start", 0.0), ("a", "1", "alive", 0.25), ("a", "1", "end", 0.5),
          ("b", "1", "start", 0.5), ("b", "1", "end", 1.0),       # key 1 again, right after: no overlap
          ("c", "2", "start", 0.1), ("c", "2", "end", 0.9),
          ("d", "2", "start", 0.8), ("d", "2", "alive", 1.0))     # key 2 again while c ran, never ended
    assert ledger.executions() == {"1": 2, "2": 2}
    assert not ledger.overlaps("1")
    assert ledger.overlaps("2")
    assert [ex.id for ex in ledger.open_executions()] == ["d"]
    assert ledger.max_concurrent("t") == 3  # a (or b), c and d at 0.8-0.9


def test_a_frozen_execution_is_not_executing_while_frozen(tmp_path):
    # given: an execution silent for 5 s (SIGSTOP) that then runs on, and another in that gap
    ledger = Ledger(tmp_path / "ledger.jsonl", alive_every=0.25)
    write(ledger, ("old", "k", "start", 0.0), ("old", "k", "alive", 0.25), ("old", "k", "alive", 5.25),
          ("new", "k", "start", 1.0), ("new", "k", "end", 4.0))
    old = ledger.all_executions()[0]
    assert old.segments == [(0.0, 0.25), (5.25, 5.25)]
    assert not ledger.overlaps("k")
    assert ledger.max_concurrent("t") == 1


def test_a_kill_9_loses_no_line_already_written(tmp_path):
    # given: a process executing a recorded block that never ends by itself
    ledger = Ledger(tmp_path / "ledger.jsonl", alive_every=0.1)
    script = tmp_path / "work.py"
    script.write_text(ledger.flow_preamble() + "\nwith record('work', 7, tags=('t',)):\n    import time\n"
                      "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        wait_until(lambda: len(ledger.entries()) >= 3, 30, "the start line and two alive lines")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = time.time()
    # then: the execution is there, open (no end line), last seen before the kill
    (execution,) = ledger.all_executions()
    assert (execution.task, execution.key, execution.tags, execution.pid) == ("work", "7", ("t",), proc.pid)
    assert not execution.finished and ledger.open_executions() == [execution]
    assert execution.last_seen <= killed_at
    assert {e["event"] for e in ledger.entries()} == {"start", "alive"}


def test_an_exception_ends_the_execution_with_its_outcome(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    script = tmp_path / "fail.py"
    script.write_text(ledger.flow_preamble() + "\nwith record('work', 'x'):\n    raise KeyError('boom')\n")
    assert subprocess.run([sys.executable, str(script)], capture_output=True).returncode == 1
    (execution,) = ledger.all_executions()
    assert execution.finished and execution.outcome == "KeyError"
