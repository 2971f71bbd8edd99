"""DaskExecutor on a real dask.distributed cluster: spreading work across workers, context on the
worker, temporary clusters and their options."""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

import pytest
from distributed import LocalCluster

from flowdeck.executors import DaskExecutor
from flowdeck.executors.dask import _resources

from . import calls


def test_mapped_work_is_spread_across_workers(dask_cluster: Any) -> None:
    executor = DaskExecutor(address=dask_cluster.scheduler_address)
    with executor.start():
        addresses = executor.wait([executor.submit(calls.dask_worker_address, i) for i in range(20)])
    assert len(set(addresses)) >= 2
    assert set(addresses) <= set(dask_cluster.scheduler_info["workers"])


def test_every_submission_runs_even_with_identical_arguments(dask_cluster: Any) -> None:
    executor = DaskExecutor(address=dask_cluster.scheduler_address)
    with executor.start():
        futures = [executor.submit(calls.where) for _ in range(3)]
        assert len({future.key for future in futures}) == 3
        executor.wait(futures)


def test_keys_name_the_task_and_its_map_index(dask_cluster: Any) -> None:
    executor = DaskExecutor(address=dask_cluster.scheduler_address)
    with executor.start():
        future = executor.submit(calls.add, 1, extra_context={"task_key": "load-rows", "map_index": 4})
        plain = executor.submit(calls.add, 1)
        executor.wait([future, plain])
    assert future.key.startswith("load_rows[4]-") and plain.key.startswith("add-")


def test_dask_resource_tags_ask_workers_for_resources(dask_cluster: Any) -> None:
    assert _resources({"task_tags": ["etl", "dask-resource:GPU=1", "dask-resource:memory=2e9"]}) == {
        "GPU": 1.0, "memory": 2e9}
    assert _resources({"task_tags": ["etl"]}) is None
    with pytest.raises(ValueError, match="dask-resource:NAME=AMOUNT"):
        _resources({"task_tags": ["dask-resource:GPU"]})
    executor = DaskExecutor(address=dask_cluster.scheduler_address)
    with executor.start():
        assert executor.wait(executor.submit(calls.add, 2, extra_context={"task_tags": ["dask-resource:GPU=1"]})) == 2


def test_without_an_address_a_temporary_local_cluster_runs_the_work_and_is_closed() -> None:
    before = set(multiprocessing.active_children())
    executor = DaskExecutor(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})
    with executor.start():
        cluster = executor.cluster
        assert isinstance(cluster, LocalCluster)
        assert len(cluster.scheduler_info["workers"]) == 2
        assert executor.wait(executor.submit(calls.add, 20, 22)) == 42
    assert executor.client is None and executor.cluster is None
    assert cluster.status.name == "closed"
    assert set(multiprocessing.active_children()) <= before  # no worker process left behind


class RecordingCluster(LocalCluster):  # type: ignore[misc]
    """A real LocalCluster that remembers how it was adapted."""

    adapted: dict[str, Any] = {}

    def adapt(self, **kwargs: Any) -> Any:
        RecordingCluster.adapted = kwargs
        return super().adapt(**kwargs)


@pytest.mark.parametrize("cluster_class", [RecordingCluster, f"{__name__}.RecordingCluster"])
def test_cluster_class_cluster_kwargs_adapt_kwargs_and_client_kwargs(cluster_class: Any) -> None:
    RecordingCluster.adapted = {}
    executor = DaskExecutor(cluster_class=cluster_class,
                            cluster_kwargs={"n_workers": 1, "processes": False, "dashboard_address": ":0",
                                            "silence_logs": logging.ERROR},
                            adapt_kwargs={"minimum": 1, "maximum": 2},
                            client_kwargs={"name": "flowdeck-test-client"})
    with executor.start():
        assert isinstance(executor.cluster, RecordingCluster)
        assert executor.client is not None and "-flowdeck-test-client-" in executor.client.id
        assert executor.wait(executor.submit(calls.add, 1, 1)) == 2
    assert RecordingCluster.adapted == {"minimum": 1, "maximum": 2}


def test_misconfiguration_is_explained() -> None:
    with pytest.raises(ValueError, match="either the address of a running cluster"):
        DaskExecutor(address="tcp://127.0.0.1:8786", cluster_class=LocalCluster)
    with pytest.raises(ValueError, match="Cannot import cluster_class"):
        with DaskExecutor(cluster_class="distributed.NoSuchCluster").start():
            pass
    with pytest.raises(RuntimeError, match="inside `with executor.start\\(\\):`"):
        DaskExecutor().submit(calls.add, 1)
