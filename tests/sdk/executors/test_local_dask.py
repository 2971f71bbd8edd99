"""LocalDaskExecutor: a pool of threads or processes that runs independent calls side by side."""

from __future__ import annotations

import os
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest

from flowdeck.executors import LocalDaskExecutor

from . import calls


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_independent_calls_run_concurrently(scheduler: str, tmp_path: Path) -> None:
    # Each call waits at a meeting point until all four are there: they can only all meet if the
    # pool runs them at the same moment (run one after the other, the first would wait in vain).
    executor = LocalDaskExecutor(scheduler=scheduler, num_workers=4)
    names = [f"call-{i}" for i in range(4)]
    with executor.start():
        met = executor.wait([executor.submit(calls.rendezvous, str(tmp_path), name, 4) for name in names])
    assert met == [names] * 4


def test_processes_run_in_other_processes_which_are_gone_after_the_block() -> None:
    executor = LocalDaskExecutor(scheduler="processes", num_workers=2)
    with executor.start():
        pids = {pid for pid, _ in executor.wait([executor.submit(calls.where) for _ in range(6)])}
    assert os.getpid() not in pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_processes_take_closures_and_lambdas_through_cloudpickle() -> None:
    offset = 100
    executor = LocalDaskExecutor(scheduler="processes", num_workers=1)
    with executor.start():
        assert executor.wait(executor.submit(lambda x: x + offset, 1)) == 101


def test_an_unpicklable_argument_is_reported_from_wait() -> None:
    import threading

    executor = LocalDaskExecutor(scheduler="processes", num_workers=1)
    with executor.start():
        future = executor.submit(calls.add, threading.Lock())
        with pytest.raises(TypeError, match="cannot be sent to a worker process"):
            executor.wait(future)


def test_threads_run_in_worker_threads() -> None:
    executor = LocalDaskExecutor(num_workers=2)
    with executor.start():
        pid, thread = executor.wait(executor.submit(calls.where))
    assert pid == os.getpid() and thread.startswith("flowdeck-worker")


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_a_waiting_call_does_not_hold_a_worker(scheduler: str) -> None:
    # With one worker, a call whose arguments are not ready yet must not block the call it waits for.
    executor = LocalDaskExecutor(scheduler=scheduler, num_workers=1)
    with executor.start():
        first = executor.submit(calls.sleep_then, 0.05, 1)
        chain = executor.submit(calls.add, first, 1)
        for _ in range(5):
            chain = executor.submit(calls.add, chain, 1)
        assert executor.wait(chain) == 7


def test_leaving_the_block_cancels_calls_not_started_yet() -> None:
    executor = LocalDaskExecutor(num_workers=1)
    with executor.start():
        running = executor.submit(calls.sleep_then, 0.2, "done")
        waiting = executor.submit(calls.add, running, 1)  # needs a string + int: would fail if it ran
        queued = executor.submit(calls.add, 1)
        time.sleep(0.05)
    assert running.result() == "done"
    with pytest.raises(CancelledError):
        waiting.result()
    with pytest.raises(CancelledError):
        queued.result()


def test_synchronous_scheduler_runs_at_submit() -> None:
    executor = LocalDaskExecutor(scheduler="synchronous")
    ran: list[int] = []
    future = executor.submit(lambda: ran.append(1) or 5)
    assert ran == [1] and executor.wait(future) == 5


def test_submit_outside_start_and_bad_arguments_are_explained() -> None:
    with pytest.raises(RuntimeError, match="inside `with executor.start\\(\\):`"):
        LocalDaskExecutor().submit(calls.add, 1)
    with pytest.raises(ValueError, match="Unknown scheduler"):
        LocalDaskExecutor(scheduler="gpu")
    with pytest.raises(ValueError, match="num_workers"):
        LocalDaskExecutor(num_workers=0)


def test_prefect_style_import_path() -> None:
    from flowdeck.executors.dask import LocalDaskExecutor as FromDaskModule

    assert FromDaskModule is LocalDaskExecutor


def test_values_of_other_kinds_pass_through_wait() -> None:
    executor = LocalDaskExecutor(num_workers=1)
    with executor.start():
        structure: Any = {"n": 1, "s": {1, 2}, "f": frozenset({executor.submit(calls.add, 3)})}
        assert executor.wait(structure) == {"n": 1, "s": {1, 2}, "f": frozenset({3})}
