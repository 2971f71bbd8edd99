"""A pool of local threads or processes (Prefect 1's ``LocalDaskExecutor``), built on
:mod:`concurrent.futures` so that it needs no dask installed.

A submitted call starts as soon as the futures among its arguments have finished (it never holds a
worker while it waits for them), so independent calls run side by side and a chain of dependent ones
runs in order. With processes, the function, its arguments and its result travel with cloudpickle,
so functions defined in ``__main__`` or inside other functions work too.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import Executor as PoolExecutor
from contextlib import contextmanager
from typing import Any

from flowdeck.executors.base import Executor, call_in_context, find_leaves, map_leaves

_SCHEDULERS = {
    "threads": "threads", "threading": "threads",
    "processes": "processes", "multiprocessing": "processes",
    "synchronous": "synchronous", "sync": "synchronous", "single-threaded": "synchronous",
}


def _is_future(value: Any) -> bool:
    return isinstance(value, Future)


def _result_of(future: Future[Any]) -> Any:
    return future.result()


def run_pickled(payload: bytes) -> bytes:
    """Worker-process side: unpickle a call, run it, pickle its outcome (the value, or the exception
    with the worker's traceback as a note)."""
    cloudpickle = _cloudpickle()
    fn, args, kwargs, extra_context = cloudpickle.loads(payload)
    try:
        return bytes(cloudpickle.dumps((True, call_in_context(fn, args, kwargs, extra_context))))
    except Exception as exc:
        exc.add_note("Traceback in the worker process:\n" + "".join(traceback.format_exception(exc)).rstrip())
        try:
            return bytes(cloudpickle.dumps((False, exc)))
        except Exception:  # an exception that cannot be pickled: keep its type name and message
            return bytes(cloudpickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}"))))


def _settle(outer: Future[Any], *, result: Any = None, exception: BaseException | None = None) -> None:
    # A future its holder cancelled has nobody waiting for it any more.
    with contextlib.suppress(InvalidStateError):
        if exception is not None:
            outer.set_exception(exception)
        else:
            outer.set_result(result)


def _cloudpickle() -> Any:
    # Imported when first needed (only processes use it); the package ships no type information.
    return importlib.import_module("cloudpickle")


class LocalDaskExecutor(Executor):
    """Runs calls in a local pool: ``scheduler="threads"`` (default) or ``"processes"``
    (``"synchronous"`` runs each call at submit, for debugging). ``num_workers`` defaults to the
    number of CPUs for processes and to Python's thread-pool default for threads; ``mp_context`` picks
    how processes start ("forkserver" where available, else "spawn")."""

    def __init__(self, scheduler: str = "threads", num_workers: int | None = None, *,
                 mp_context: str | None = None) -> None:
        if scheduler not in _SCHEDULERS:
            raise ValueError(f"Unknown scheduler {scheduler!r}: use 'threads', 'processes' or 'synchronous'.")
        if num_workers is not None and num_workers < 1:
            raise ValueError("num_workers must be at least 1.")
        self.scheduler = _SCHEDULERS[scheduler]
        self.num_workers = num_workers
        if mp_context is None:
            mp_context = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self.mp_context = mp_context
        self._pool: PoolExecutor | None = None
        self._closed = True
        self._closing = threading.Lock()
        self._launches: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any],
                                                dict[str, Any] | None] | None] = queue.SimpleQueue()

    @property
    def runs_in_process(self) -> bool:  # type: ignore[override]
        """Threads run in this process; worker processes do not."""
        return self.scheduler != "processes"

    def __getstate__(self) -> dict[str, Any]:
        # Only the settings travel (a flow holding its executor may be pickled); pools do not.
        return {"scheduler": self.scheduler, "num_workers": self.num_workers, "mp_context": self.mp_context}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<Executor: LocalDaskExecutor (scheduler={self.scheduler!r}, num_workers={self.num_workers})>"

    @contextmanager
    def start(self) -> Iterator[None]:
        """Start the pool for the block (worker processes are up before it begins). On the way out,
        calls not started yet are cancelled (their futures raise CancelledError) and running ones are
        waited for."""
        if self.scheduler == "threads":
            self._pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="flowdeck-worker")
        elif self.scheduler == "processes":
            workers = self.num_workers or os.cpu_count() or 1
            self._pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context(self.mp_context)
            )
            # Start every worker now (one call each spawns them all), so that start-up costs and
            # failures show here rather than in the first tasks.
            for started in [self._pool.submit(os.getpid) for _ in range(workers)]:
                started.result()
        self._closed = False
        dispatcher = None
        if self.scheduler == "processes":
            # Calls whose arguments finish later are handed to the process pool from this thread, not
            # from the pool's own result thread (which a flood of submissions could block).
            dispatcher = threading.Thread(target=self._dispatch, name="flowdeck-dispatch", daemon=True)
            dispatcher.start()
        try:
            yield
        finally:
            with self._closing:
                self._closed = True
                if dispatcher is not None:
                    self._launches.put(None)  # after every launch queued before closing
            if dispatcher is not None:
                dispatcher.join()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _dispatch(self) -> None:
        while (item := self._launches.get()) is not None:
            self._launch(*item)

    def submit(self, fn: Callable[..., Any], /, *args: Any, extra_context: dict[str, Any] | None = None,
               **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; it starts once the futures among its arguments are done
        (it fails with the first of their exceptions if one failed). Returns a
        :class:`concurrent.futures.Future`."""
        if self._closed and self.scheduler != "synchronous":
            raise RuntimeError("LocalDaskExecutor.submit() needs a started executor: "
                               "call it inside `with executor.start():`.")
        outer: Future[Any] = Future()
        upstream = find_leaves((args, kwargs), _is_future)
        if not upstream:
            self._launch(outer, fn, args, kwargs, extra_context)
            return outer
        remaining = [len(upstream)]
        lock = threading.Lock()

        def on_upstream_done(_: Future[Any]) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            self._when_ready(outer, upstream, fn, args, kwargs, extra_context)

        for future in upstream:
            future.add_done_callback(on_upstream_done)
        return outer

    def _when_ready(self, outer: Future[Any], upstream: list[Future[Any]], fn: Callable[..., Any],
                    args: tuple[Any, ...], kwargs: dict[str, Any], extra_context: dict[str, Any] | None) -> None:
        for future in upstream:
            if future.cancelled():
                _settle(outer, exception=CancelledError("an upstream call was cancelled"))
                return
            failure = future.exception()
            if failure is not None:
                _settle(outer, exception=failure)
                return
        args, kwargs = map_leaves((args, kwargs), _is_future, _result_of)
        if self.scheduler == "processes":
            with self._closing:
                if not self._closed:
                    self._launches.put((outer, fn, args, kwargs, extra_context))
                    return
            _settle(outer, exception=CancelledError("the executor was shut down before this call could start"))
        else:
            self._launch(outer, fn, args, kwargs, extra_context)

    def _launch(self, outer: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                extra_context: dict[str, Any] | None) -> None:
        if self.scheduler == "synchronous":
            try:
                _settle(outer, result=call_in_context(fn, args, kwargs, extra_context))
            except Exception as exc:
                _settle(outer, exception=exc)
            return
        pool = self._pool
        if self._closed or pool is None:
            _settle(outer, exception=CancelledError("the executor was shut down before this call could start"))
            return
        if self.scheduler == "processes":
            cloudpickle = _cloudpickle()
            try:
                payload = cloudpickle.dumps((fn, args, kwargs, extra_context))
            except Exception as exc:
                error = TypeError(f"{fn!r} or its arguments cannot be sent to a worker process: {exc}")
                error.__cause__ = exc
                _settle(outer, exception=error)
                return
            try:
                inner = pool.submit(run_pickled, payload)
            except RuntimeError:  # shut down meanwhile
                _settle(outer, exception=CancelledError("the executor was shut down before this call could start"))
                return
            inner.add_done_callback(lambda done: self._unpickle_into(outer, done))
            return
        try:
            inner = pool.submit(call_in_context, fn, args, kwargs, extra_context)
        except RuntimeError:
            _settle(outer, exception=CancelledError("the executor was shut down before this call could start"))
            return
        inner.add_done_callback(lambda done: self._copy_into(outer, done))

    @staticmethod
    def _copy_into(outer: Future[Any], done: Future[Any]) -> None:
        if done.cancelled():
            _settle(outer, exception=CancelledError("the executor was shut down before this call could start"))
        elif (failure := done.exception()) is not None:
            _settle(outer, exception=failure)
        else:
            _settle(outer, result=done.result())

    @staticmethod
    def _unpickle_into(outer: Future[Any], done: Future[Any]) -> None:
        if done.cancelled() or done.exception() is not None:
            LocalDaskExecutor._copy_into(outer, done)  # cancelled, or the worker process died
            return
        try:
            succeeded, value = _cloudpickle().loads(done.result())
        except Exception as exc:
            _settle(outer, exception=exc)
            return
        if succeeded:
            _settle(outer, result=value)
        else:
            _settle(outer, exception=value)

    def wait(self, futures: Any) -> Any:
        """Block until every future in ``futures`` (nested in lists, tuples, sets, dicts) is done and
        return the structure with their values; raises the first failure met."""
        return map_leaves(futures, _is_future, _result_of)
