"""The ledger: an append-only JSON-lines file that a flow's tasks write themselves, so a test counts
what really executed (not what the server believes) and when.

``Ledger.flow_preamble()`` is Python source to put at the top of a generated flow file (it imports
nothing from ``tests``: the flow runs in the agent's subprocess). It defines ``record(task, key,
tags=())``, a context manager around a task's work::

    @task
    def work_item(item):
        with record("work_item", item, tags=("limited",)):
            ...

Each execution writes a ``start`` line, an ``alive`` line every ``alive_every`` seconds while it
runs (from a daemon thread, so a process frozen by SIGSTOP writes none and one that resumes writes
again), and an ``end`` line when the block exits, normally or by an exception. A process killed
with SIGKILL writes no ``end``: its execution ends at its last line. Every line is one
``os.write`` to a file opened with ``O_APPEND`` followed by ``os.fsync``, so concurrent writers
never interleave and a ``kill -9`` loses nothing already written.

Lines: ``{"id", "task", "key", "tags", "pid", "event": "start"|"alive"|"end", "t", "outcome"?}``
(``t`` is ``time.time()``; ``outcome`` on ``end`` lines is ``"ok"`` or the exception's class name).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PREAMBLE = '''
# --- the fault suite's ledger (tests/faults/ledger.py) ---
import contextlib as _fd_contextlib
import json as _fd_json
import os as _fd_os
import threading as _fd_threading
import time as _fd_time
import uuid as _fd_uuid

_FD_LEDGER = {path!r}
_FD_ALIVE_EVERY = {alive_every!r}


def _fd_append(entry):
    line = (_fd_json.dumps(entry) + "\\n").encode()
    fd = _fd_os.open(_FD_LEDGER, _fd_os.O_WRONLY | _fd_os.O_APPEND | _fd_os.O_CREAT, 0o644)
    try:
        _fd_os.write(fd, line)
        _fd_os.fsync(fd)
    finally:
        _fd_os.close(fd)


@_fd_contextlib.contextmanager
def record(task, key, tags=()):
    base = {{"id": _fd_uuid.uuid4().hex, "task": str(task), "key": str(key), "tags": [str(t) for t in tags],
            "pid": _fd_os.getpid()}}
    _fd_append({{**base, "event": "start", "t": _fd_time.time()}})
    done = _fd_threading.Event()

    def _alive():
        while not done.wait(_FD_ALIVE_EVERY):
            _fd_append({{**base, "event": "alive", "t": _fd_time.time()}})

    if _FD_ALIVE_EVERY:
        _fd_threading.Thread(target=_alive, name="ledger-alive", daemon=True).start()
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        done.set()
        _fd_append({{**base, "event": "end", "t": _fd_time.time(), "outcome": outcome}})
# --- end of the ledger ---
'''


@dataclass
class Execution:
    """One ``record`` block: from its start line to its end line (or its last line if it never
    ended). ``segments`` are the stretches it was seen executing: a gap in its alive lines longer
    than the ledger's ``gap`` splits them (a frozen process does not execute)."""

    id: str
    task: str
    key: str
    tags: tuple[str, ...]
    pid: int
    start: float
    end: float | None = None
    outcome: str | None = None
    times: list[float] = field(default_factory=list)
    segments: list[tuple[float, float]] = field(default_factory=list)

    @property
    def last_seen(self) -> float:
        return self.times[-1]

    @property
    def finished(self) -> bool:
        return self.end is not None


class Ledger:
    def __init__(self, path: Path | str, *, alive_every: float = 0.25, gap: float | None = None) -> None:
        self.path = Path(path)
        self.alive_every = alive_every
        # A gap between two lines of a running execution this long means it was not executing.
        self.gap = gap if gap is not None else max(1.0, 4 * alive_every)

    def flow_preamble(self) -> str:
        return _PREAMBLE.format(path=str(self.path.resolve()), alive_every=self.alive_every)

    # --- reading ------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def all_executions(self, task: str | None = None) -> list[Execution]:
        found: dict[str, Execution] = {}
        for entry in self.entries():
            if task is not None and entry["task"] != task:
                continue
            ex = found.get(entry["id"])
            if ex is None:
                ex = found[entry["id"]] = Execution(id=entry["id"], task=entry["task"], key=entry["key"],
                                                    tags=tuple(entry["tags"]), pid=entry["pid"], start=entry["t"])
            ex.times.append(entry["t"])
            if entry["event"] == "start":
                ex.start = entry["t"]
            elif entry["event"] == "end":
                ex.end = entry["t"]
                ex.outcome = entry.get("outcome")
        for ex in found.values():
            ex.times.sort()
            ex.segments = self._segments(ex.times)
        return sorted(found.values(), key=lambda e: e.start)

    def _segments(self, times: list[float]) -> list[tuple[float, float]]:
        segments: list[tuple[float, float]] = []
        begin = previous = times[0]
        for t in times[1:]:
            if t - previous > self.gap:
                segments.append((begin, previous))
                begin = t
            previous = t
        segments.append((begin, previous))
        return segments

    def executions(self, task: str | None = None) -> Counter[str]:
        """How many times each key started executing (of ``task``, or of every task)."""
        return Counter(ex.key for ex in self.all_executions(task))

    def open_executions(self) -> list[Execution]:
        """Executions with a start and no end: killed, or still running."""
        return [ex for ex in self.all_executions() if not ex.finished]

    def overlaps(self, key: str, task: str | None = None, *, tolerance: float = 0.0) -> bool:
        """Whether two executions of ``key`` were ever seen executing at the same time (for more
        than ``tolerance`` seconds)."""
        runs = [ex for ex in self.all_executions(task) if ex.key == str(key)]
        for i, a in enumerate(runs):
            for b in runs[i + 1:]:
                for a0, a1 in a.segments:
                    for b0, b1 in b.segments:
                        if min(a1, b1) - max(a0, b0) > tolerance:
                            return True
        return False

    def max_concurrent(self, tag: str) -> int:
        """The most executions tagged ``tag`` seen executing at one instant."""
        events: list[tuple[float, int]] = []
        for ex in self.all_executions():
            if tag in ex.tags:
                for begin, end in ex.segments:
                    # an instant execution still executed: give it the smallest duration
                    events += [(begin, 1), (max(end, begin + 1e-6), -1)]
        # at equal times count ends first: one ending as another starts is not an overlap
        events.sort(key=lambda e: (e[0], e[1]))
        current = peak = 0
        for _, delta in events:
            current += delta
            peak = max(peak, current)
        return peak
