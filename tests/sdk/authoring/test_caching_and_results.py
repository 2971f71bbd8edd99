"""Caching (``cache_for``, ``cache_key_fn``, validators, shared ``cache_key``) and checkpointing with
``LocalResult`` (result references, targets, restarts reading checkpoints back)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flowdeck import Flow, Parameter, task
from flowdeck.engine import cache_validators
from flowdeck.engine.results import LocalResult
from flowdeck.engine.serializers import JSONSerializer
from flowdeck.engine.state import Cached, Success

from .conftest import RecordingObserver


def counting_task(**options: Any) -> tuple[Any, list[Any]]:
    calls: list[Any] = []

    @task(**options)
    def compute(x: int) -> int:
        calls.append(x)
        return x * 2

    return compute, calls


def test_cache_for_reuses_the_result_within_the_duration(observer: RecordingObserver) -> None:
    compute, calls = counting_task(cache_for=timedelta(minutes=5))
    with Flow("cached") as flow:
        c = compute(Parameter("x", default=1))
    first = flow.run()
    second = flow.run(observer=observer)
    assert calls == [1]
    assert isinstance(second.result[c], Cached)
    assert second.result[c].result == 2
    assert second.result[c].server_type == "COMPLETED"
    assert observer.names("compute") == ["Cached"]  # straight from Pending: never ran
    assert first.result[c].result == 2
    # duration_only (the default) ignores inputs: Prefect 1 semantics.
    assert flow.run(x=5).result[c].result == 2


def test_cache_expires() -> None:
    compute, calls = counting_task(cache_for=timedelta(milliseconds=100))
    with Flow("expiring") as flow:
        compute(1)
    flow.run()
    time.sleep(0.15)
    flow.run()
    assert calls == [1, 1]


def test_all_inputs_validator_recomputes_when_inputs_change() -> None:
    compute, calls = counting_task(cache_for=timedelta(minutes=5), cache_validator=cache_validators.all_inputs)
    with Flow("inputs") as flow:
        c = compute(Parameter("x", default=1))
    flow.run()
    flow.run()
    assert flow.run(x=2).result[c].result == 4
    assert flow.run(x=2).result[c].is_cached()
    assert calls == [1, 2]


def test_all_parameters_and_partial_validators() -> None:
    compute, calls = counting_task(cache_for=timedelta(minutes=5), cache_validator=cache_validators.all_parameters)
    with Flow("params") as flow:
        compute(Parameter("x", default=1), upstream_tasks=[Parameter("unused", default="a")])
    flow.run()
    flow.run(unused="a")
    flow.run(unused="b")
    assert calls == [1, 1]

    compute2, calls2 = counting_task(
        cache_for=timedelta(minutes=5), cache_validator=cache_validators.partial_parameters_only(["x"])
    )
    with Flow("partial") as flow2:
        compute2(Parameter("x", default=1), upstream_tasks=[Parameter("other", default=0)])
    flow2.run()
    flow2.run(other=9)
    flow2.run(x=3)
    assert calls2 == [1, 3]


def test_cache_key_fn_caches_per_computed_key() -> None:
    compute, calls = counting_task(cache_key_fn=lambda context, inputs: f"x={inputs['x']}")
    with Flow("keyed") as flow:
        c = compute(Parameter("x", default=1))
    assert [flow.run(x=v).result[c].result for v in (1, 2, 1, 2)] == [2, 4, 2, 4]
    assert calls == [1, 2]

    none_key, none_calls = counting_task(cache_key_fn=lambda context, inputs: None)
    with Flow("no-key") as flow2:
        none_key(1)
    flow2.run()
    flow2.run()
    assert none_calls == [1, 1]


def test_mapped_children_are_cached_per_index() -> None:
    compute, calls = counting_task(cache_for=timedelta(minutes=5))
    with Flow("mapped-cache") as flow:
        m = compute.map([1, 2, 3])
    assert flow.run().result[m].result == [2, 4, 6]
    second = flow.run()
    assert second.result[m].result == [2, 4, 6]
    assert all(s.is_cached() for s in second.result[m].map_states)
    assert calls == [1, 2, 3]


def test_never_use_validator_always_runs() -> None:
    compute, calls = counting_task(cache_for=timedelta(minutes=5), cache_validator=cache_validators.never_use)
    with Flow("never") as flow:
        compute(1)
    flow.run()
    flow.run()
    assert calls == [1, 1]


def test_local_result_checkpoints_and_states_carry_the_reference(tmp_path: Path) -> None:
    compute, _ = counting_task(result=LocalResult(dir=tmp_path))
    with Flow("checkpoint") as flow:
        c = compute(21)
        mapped = compute.map([1, 2])
    state = flow.run()
    ref = state.result[c].result_ref
    assert ref is not None and Path(ref).parent == tmp_path
    assert LocalResult(dir=tmp_path).read(ref).value == 42
    assert state.result[c].to_server() == {
        "type": "COMPLETED", "name": "Success", "message": "Task run succeeded.", "result_ref": ref,
    }
    child_refs = [s.result_ref for s in state.result[mapped].map_states]
    assert [Path(str(r)).name[: len("checkpoint-compute-2-0-")] for r in child_refs] == [
        "checkpoint-compute-2-0-", "checkpoint-compute-2-1-",
    ]
    assert [LocalResult(dir=tmp_path).read(str(r)).value for r in child_refs] == [2, 4]


def test_flow_level_result_and_checkpoint_false(tmp_path: Path) -> None:
    @task(checkpoint=False)
    def secret() -> str:
        return "not written"

    @task
    def public() -> str:
        return "written"

    with Flow("flow-result", result=LocalResult(dir=tmp_path, serializer=JSONSerializer())) as flow:
        s, p = secret(), public()
        param = Parameter("p", default=1)
        param.set_downstream(p, flow=flow)
    state = flow.run()
    assert state.result[s].result_ref is None
    assert state.result[param].result_ref is None
    assert Path(str(state.result[p].result_ref)).read_text() == '"written"'


def test_target_makes_a_task_reuse_an_existing_result(tmp_path: Path) -> None:
    compute, calls = counting_task(result=LocalResult(dir=tmp_path), target="{task_name}-{x}.bin")
    with Flow("target") as flow:
        c = compute(Parameter("x", default=3))
    first = flow.run()
    assert first.result[c].result_ref == str(tmp_path / "compute-3.bin")
    second = flow.run()
    assert isinstance(second.result[c], Cached)
    assert second.result[c].result == 6
    assert flow.run(x=4).result[c].result == 8
    assert calls == [3, 4]


def test_location_template_is_filled_from_context(tmp_path: Path) -> None:
    compute, _ = counting_task(result=LocalResult(dir=tmp_path, location="{flow_name}/{task_key}.pkl"))
    with Flow("templated") as flow:
        c = compute(1)
    assert flow.run().result[c].result_ref == str(tmp_path / "templated" / "compute.pkl")

    broken, _ = counting_task(result=LocalResult(dir=tmp_path, location="{no_such_name}.pkl"))
    with Flow("broken-template") as flow2:
        b = broken(1)
    state = flow2.run().result[b]
    assert state.is_failed() and "no_such_name" in (state.message or "")


def test_local_result_refuses_an_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot use the directory"):
        LocalResult(dir=blocker / "sub")


def test_restart_reads_upstream_results_back_from_their_references(tmp_path: Path) -> None:
    produce, produced = counting_task(result=LocalResult(dir=tmp_path))

    @task
    def consume(v: int) -> int:
        return v + 1

    with Flow("restart") as flow:
        p = produce(5)
        c = consume(p)
    first = flow.run()
    ref = first.result[p].result_ref
    # What an agent knows after a crash: the task succeeded, and where its result is.
    restarted = flow.run(initial_task_states={"compute": Success(result_ref=ref)})
    assert produced == [5]
    assert restarted.result[c].result == 11
    assert isinstance(restarted.result[p], Success) and restarted.result[p].result == 10
