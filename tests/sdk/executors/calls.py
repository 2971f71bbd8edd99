"""Functions the executor tests submit. They live in an importable module so that worker processes
(process pools, Dask workers) can unpickle them by reference."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any


class TaskExploded(Exception):
    """An exception type of our own, to check that the original type comes back from workers."""


def add(*numbers: int) -> int:
    return sum(numbers)


def total(values: list[int], *, key: int = 0, workers: int = 0, fn: int = 0) -> int:
    # Keyword names that Client.submit or Executor.submit use themselves must still reach the call.
    return sum(values) + key + workers + fn


def describe(mapping: dict[str, Any], pair: tuple[int, int]) -> dict[str, Any]:
    return {"mapping": mapping, "pair": pair}


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def rendezvous(directory: str, name: str, expected: int, timeout: float = 60.0) -> list[str]:
    """Arrives at a meeting point shared by ``expected`` calls (a folder: threads and processes alike
    see it) and waits until all of them are there at once: only calls that run side by side can all
    meet. Returns who had arrived when this call left. It gives up after ``timeout`` (calls run one
    after the other never meet) and then lets the others give up at once, so a failure is quick."""
    folder = Path(directory)
    (folder / f"{name}.arrived").touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (folder / "gave-up").exists():
        arrived = sorted(path.stem for path in folder.glob("*.arrived"))
        if len(arrived) >= expected:
            return arrived
        time.sleep(0.01)
    (folder / "gave-up").touch()
    return sorted(path.stem for path in folder.glob("*.arrived"))


def explode(message: str) -> None:
    raise TaskExploded(message)


def fail_with_value_error(message: str) -> None:
    raise ValueError(message)


def read_context(*keys: str) -> dict[str, Any]:
    from flowdeck.context import context

    return {key: context.get(key) for key in keys}


def where() -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


def dask_worker_address(i: int) -> str:
    from distributed import get_worker

    time.sleep(0.02)  # long enough that one worker cannot drain the queue alone
    return str(get_worker().address)
