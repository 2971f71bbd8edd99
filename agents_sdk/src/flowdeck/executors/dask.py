"""Executors that run on Dask (Prefect 1's ``prefect.executors.dask``).

:class:`DaskExecutor` runs calls on a ``dask.distributed`` cluster: one it starts for the run
(``distributed.LocalCluster`` unless ``cluster_class`` says otherwise) or one already running at
``address``. Futures given as arguments go to Dask as they are, so Dask resolves the dependencies
and spreads independent calls, such as the children of a mapped task, across its workers.
``LocalDaskExecutor`` (a local thread or process pool) is importable from here too, as in Prefect 1.

``dask``/``distributed`` are optional dependencies: they are imported when the executor starts.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from flowdeck.executors.base import Executor, call_in_context, find_leaves, map_leaves
from flowdeck.executors.local_dask import LocalDaskExecutor

if TYPE_CHECKING:
    from distributed import Future as DaskFuture

RESOURCE_TAG_PREFIX = "dask-resource:"


def run_with_context(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                     extra_context: dict[str, Any] | None) -> Any:
    """Worker side: ``fn(*args, **kwargs)`` with ``extra_context`` set in ``flowdeck.context``.
    (Arguments and keyword arguments travel packed, so that a keyword such as ``key`` or ``workers``
    reaches ``fn`` instead of ``Client.submit``.)"""
    return call_in_context(fn, args, kwargs, extra_context)


def _import_object(path: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ValueError(f"cluster_class {path!r} is not a dotted path such as 'distributed.LocalCluster'.")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"Cannot import cluster_class {path!r}: {exc}") from exc


def _resources(extra_context: dict[str, Any]) -> dict[str, float] | None:
    """Dask worker resources asked for by task tags such as ``dask-resource:GPU=1`` (Prefect 1)."""
    found: dict[str, float] = {}
    for tag in extra_context.get("task_tags") or ():
        if isinstance(tag, str) and tag.startswith(RESOURCE_TAG_PREFIX):
            name, _, amount = tag[len(RESOURCE_TAG_PREFIX):].partition("=")
            try:
                found[name] = float(amount)
            except ValueError:
                raise ValueError(f"Task tag {tag!r} must look like 'dask-resource:NAME=AMOUNT'.") from None
    return found or None


def _key_prefix(fn: Callable[..., Any], extra_context: dict[str, Any] | None) -> str:
    # Dask groups keys by their prefix (before the first '-') in its dashboard and statistics.
    if extra_context and extra_context.get("task_key"):
        name = str(extra_context["task_key"])
        index = extra_context.get("map_index", -1)
        if isinstance(index, int) and index >= 0:
            name = f"{name}[{index}]"
    else:
        name = getattr(fn, "__name__", "call")
    return name.replace("-", "_")


class DaskExecutor(Executor):
    """Runs calls on a ``dask.distributed`` cluster.

    Args:
        address: the scheduler of a running cluster (e.g. ``"tcp://10.0.0.5:8786"``). When None, a
            temporary cluster is started for the run and closed after it.
        cluster_class: the class (or a dotted path to it) of the temporary cluster; defaults to
            ``distributed.LocalCluster``.
        cluster_kwargs: keyword arguments for ``cluster_class``. The default LocalCluster is sized to
            the machine (Dask's defaults), serves its dashboard on a free port (``dashboard_address=":0"``)
            and keeps Dask's logs quiet unless ``debug`` is set; any of these can be given here.
        adapt_kwargs: if given, ``cluster.adapt(**adapt_kwargs)`` scales the temporary cluster.
        client_kwargs: keyword arguments for ``distributed.Client``.
        debug: keep Dask's own logging of the temporary cluster.
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        debug: bool = False,
    ) -> None:
        if address is not None and (cluster_class is not None or cluster_kwargs or adapt_kwargs):
            raise ValueError("Give either the address of a running cluster, or cluster_class/cluster_kwargs/"
                             "adapt_kwargs to start one: not both.")
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.debug = debug
        # ``distributed`` ships no type information: its objects are typed Any here.
        self.client: Any = None
        self.cluster: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Only the settings travel (a flow holding its executor may be pickled); the client does not.
        return {"address": self.address, "cluster_class": self.cluster_class, "cluster_kwargs": self.cluster_kwargs,
                "adapt_kwargs": self.adapt_kwargs, "client_kwargs": self.client_kwargs, "debug": self.debug}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        where = self.address or "a temporary cluster"
        return f"<Executor: DaskExecutor ({where})>"

    def _cluster_factory(self) -> tuple[Callable[..., Any], dict[str, Any]]:
        kwargs = dict(self.cluster_kwargs)
        if self.cluster_class is None:
            from distributed import LocalCluster

            kwargs.setdefault("dashboard_address", ":0")  # a free port: never clash with another cluster
            if not self.debug:
                kwargs.setdefault("silence_logs", logging.CRITICAL)
            return LocalCluster, kwargs
        factory = _import_object(self.cluster_class) if isinstance(self.cluster_class, str) else self.cluster_class
        if not callable(factory):
            raise ValueError(f"cluster_class {self.cluster_class!r} is not a class or callable.")
        return factory, kwargs

    @contextmanager
    def start(self) -> Iterator[None]:
        """Connect a client to ``address``, or start the temporary cluster and connect to it; close
        both (the cluster only if it was started here) at the end of the block."""
        try:
            client_class: Any = importlib.import_module("distributed").Client
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("DaskExecutor needs dask.distributed: pip install 'flowdeck[dask]'.") from exc
        client_kwargs = {"set_as_default": False, **self.client_kwargs}
        cluster = None
        try:
            if self.address is not None:
                self.client = client_class(self.address, **client_kwargs)
            else:
                factory, kwargs = self._cluster_factory()
                cluster = factory(**kwargs)
                self.cluster = cluster
                if self.adapt_kwargs:
                    cluster.adapt(**self.adapt_kwargs)
                self.client = client_class(cluster, **client_kwargs)
            yield
        finally:
            client, self.client = self.client, None
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
            self.cluster = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, extra_context: dict[str, Any] | None = None,
               **kwargs: Any) -> DaskFuture[Any]:
        """Submit ``fn(*args, **kwargs)`` to the cluster (``pure=False``: every call runs); futures
        among the arguments, also inside lists and dicts, are resolved by Dask on the worker."""
        client = self.client
        if client is None:
            raise RuntimeError("DaskExecutor.submit() needs a started executor: call it inside "
                               "`with executor.start():`.")
        key = f"{_key_prefix(fn, extra_context)}-{uuid.uuid4().hex}"
        options: dict[str, Any] = {"key": key, "pure": False}
        if extra_context and (resources := _resources(extra_context)):
            options["resources"] = resources
        future: DaskFuture[Any] = client.submit(run_with_context, fn, args, kwargs, extra_context, **options)
        return future

    def wait(self, futures: Any) -> Any:
        """Gather the results of every Dask future in ``futures`` (nested lists, tuples, sets, dicts)
        in one round trip and return the structure with the values; raises the first failure with
        its original type and message."""
        client = self.client
        if client is None:
            raise RuntimeError("DaskExecutor.wait() needs a started executor.")
        from distributed import Future as DaskFuture

        def is_future(value: Any) -> bool:
            return isinstance(value, DaskFuture)

        pending = find_leaves(futures, is_future)
        if not pending:
            return futures
        values = client.gather(pending)
        by_key = {future.key: value for future, value in zip(pending, values, strict=True)}
        return map_leaves(futures, is_future, lambda future: by_key[future.key])


__all__ = ["DaskExecutor", "LocalDaskExecutor"]
