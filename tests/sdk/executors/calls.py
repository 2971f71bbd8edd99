"""Functions the executor tests submit. They live in an importable module so that worker processes
(process pools, Dask workers) can unpickle them by reference."""

from __future__ import annotations

import os
import threading
import time
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


def sleep_span(seconds: float) -> tuple[float, float]:
    """Sleeps, and says when it started and ended (wall clock, comparable across processes)."""
    started = time.time()
    time.sleep(seconds)
    return started, time.time()


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
