"""Fixtures for the executor tests: one small real ``dask.distributed`` cluster for the session, and
each kind of executor, started."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowdeck.executors import DaskExecutor, Executor, LocalDaskExecutor, LocalExecutor


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[object]:
    """Two worker processes of one thread each; the dashboard on a free port."""
    import logging

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR, resources={"GPU": 1})
    try:
        yield cluster
    finally:
        cluster.close()


EXECUTOR_KINDS = ["local", "threads", "processes", "dask"]


@pytest.fixture(params=EXECUTOR_KINDS)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """Each executor, started: the tests that use it hold for every executor."""
    kind = request.param
    chosen: Executor
    if kind == "local":
        chosen = LocalExecutor()
    elif kind == "dask":
        chosen = DaskExecutor(address=request.getfixturevalue("dask_cluster").scheduler_address)
    else:
        chosen = LocalDaskExecutor(scheduler=kind, num_workers=2)
    with chosen.start():
        yield chosen
