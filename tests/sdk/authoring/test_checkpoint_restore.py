"""Checkpoints and what a retry restores from them (no server).

Flow runs an agent starts checkpoint every result by default (``checkpointing`` in the context) to a
``CheckpointResult`` in ``FLOWDECK_RESULTS_DIR``; the server keeps only the reference, relative to
that directory. A retry (``flowdeck.agent.execute.initial_task_states``) restores a task its earlier
attempt completed only when that reference loads on the retrying machine, and otherwise runs the
task again and logs why — never a finished task with a ``None`` result."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from flowdeck import Flow, Parameter, task
from flowdeck.agent.execute import initial_task_states
from flowdeck.core.task import Task
from flowdeck.engine.results import CheckpointResult
from flowdeck.engine.results.checkpoint import is_checkpoint_ref
from flowdeck.engine.signals import SKIP
from flowdeck.engine.state import Mapped, Skipped, State, Success

from .conftest import RecordingObserver

AGENT_RUN = {"checkpointing": True, "flow_run_id": "3f0c6a9e-run"}


def record_of(flow: Flow, final: State, drop: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset()
              ) -> dict[str, Any]:
    """The claim record's completed task runs, as the server would give them after ``final``'s attempt."""
    rows = []
    for each, state in final.result.items():
        key = flow.key_of(each)
        entries = [(-1, state)]
        if isinstance(state, Mapped):
            entries += list(enumerate(state.map_states))
        for index, st in entries:
            if st.server_type == "COMPLETED" and (key, index) not in drop:
                rows.append({"task_key": key, "map_index": index, "state_name": st.name,
                             "result_ref": st.result_ref or ""})
    return {"id": AGENT_RUN["flow_run_id"], "task_runs": rows}


def pipeline(calls: list[str]) -> tuple[Flow, dict[str, Task]]:
    """make_items → work_item.map → finish_item.map → total: mapped tasks over upstream results."""
    lock = threading.Lock()

    def called(name: str) -> None:
        with lock:
            calls.append(name)

    @task
    def make_items() -> list[int]:
        called("make_items")
        return [1, 2, 3]

    @task
    def work_item(x: int) -> int:
        called(f"work_item[{x}]")
        return x * 10

    @task
    def finish_item(x: int) -> int:
        called(f"finish_item[{x}]")
        return x + 1

    @task
    def total(values: list[int]) -> int:
        called("total")
        return sum(values)

    with Flow("pipeline") as flow:
        items = make_items()
        work = work_item.map(items)
        finish = finish_item.map(work)
        t = total(finish)
    return flow, {"make_items": items, "work_item": work, "finish_item": finish, "total": t}


@pytest.fixture
def results_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "machine-a" / "results"
    monkeypatch.setenv("FLOWDECK_RESULTS_DIR", str(path))
    monkeypatch.delenv("FLOWDECK_CHECKPOINTING", raising=False)
    return path


def test_agent_runs_checkpoint_every_result_to_the_results_directory_by_reference(results_dir: Path) -> None:
    calls: list[str] = []
    flow, t = pipeline(calls)
    final = flow.run(context=AGENT_RUN)
    assert final.is_successful()
    ref = final.result[t["make_items"]].result_ref
    # Relative to the results directory, one sub-directory per flow run: another machine resolves it
    # against its own directory.
    assert ref is not None and ref.startswith("3f0c6a9e-run/make_items-") and not Path(ref).is_absolute()
    assert CheckpointResult().read(ref).value == [1, 2, 3]
    children = [s.result_ref for s in final.result[t["work_item"]].map_states]
    assert [CheckpointResult(dir=results_dir).read(str(r)).value for r in children] == [10, 20, 30]
    assert len(list((results_dir / "3f0c6a9e-run").glob("*.pickle"))) == 1 + 3 + 3 + 1


def test_flow_run_checkpoints_nothing_unless_asked(results_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow, t = pipeline([])
    final = flow.run()
    assert final.result[t["make_items"]].result_ref is None
    assert not results_dir.exists()
    monkeypatch.setenv("FLOWDECK_CHECKPOINTING", "true")
    assert flow.run().result[t["make_items"]].result_ref is not None


def test_parameters_and_checkpoint_false_tasks_are_not_checkpointed(results_dir: Path) -> None:
    @task(checkpoint=False)
    def secret(x: int) -> int:
        return x

    with Flow("opt-out") as flow:
        n = Parameter("n", default=4)
        s = secret(n)
    final = flow.run(context=AGENT_RUN)
    assert final.result[n].result_ref is None
    assert final.result[s].result_ref is None and final.result[s].result == 4


def test_a_result_that_loads_here_is_restored_and_not_run_again(results_dir: Path) -> None:
    calls: list[str] = []
    flow, t = pipeline(calls)
    first = flow.run(context=AGENT_RUN)
    # The attempt died after make_items and the first two work_item children.
    record = record_of(flow, first, drop={("work_item", -1), ("work_item", 2), ("total", -1)}
                       | {("finish_item", i) for i in (-1, 0, 1, 2)})
    calls.clear()

    restored = initial_task_states(record, flow)
    second = flow.run(context=AGENT_RUN, initial_task_states=restored)

    assert restored["make_items"].result == [1, 2, 3]
    assert second.is_successful()
    assert sorted(calls) == ["finish_item[10]", "finish_item[20]", "finish_item[30]", "total", "work_item[3]"]
    assert second.result[t["total"]].result == 11 + 21 + 31


def test_a_result_on_another_machine_runs_the_task_again_and_says_why(
    results_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    flow, t = pipeline(calls)
    record = record_of(flow, flow.run(context=AGENT_RUN), drop={("total", -1)})
    calls.clear()
    # The retry runs on a machine whose results directory is not machine A's.
    monkeypatch.setenv("FLOWDECK_RESULTS_DIR", str(tmp_path / "machine-b" / "results"))

    with caplog.at_level(logging.INFO, logger="flowdeck.agent.execute"):
        restored = initial_task_states(record, flow)
    second = flow.run(context=AGENT_RUN, initial_task_states=restored)

    assert "make_items" not in restored
    assert second.is_successful() and second.result[t["total"]].result == 63
    assert calls.count("make_items") == 1 and calls.count("total") == 1 and len(calls) == 8
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Running task make_items again: the earlier attempt's result cannot be loaded on this "
                            "machine") for m in messages), messages
    assert any(m.startswith("Running 3 mapped child(ren) of work_item again (0, 1, 2)") for m in messages), messages


def test_tasks_without_a_checkpoint_run_again(results_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    @task(checkpoint=False)
    def opted_out() -> int:
        calls.append("opted_out")
        return 1

    @task
    def unpicklable() -> Any:
        calls.append("unpicklable")
        return threading.Lock()

    @task
    def use(a: int, b: Any) -> bool:
        calls.append("use")
        return a == 1 and b is not None

    with Flow("no-checkpoint") as flow:
        u = use(opted_out(), unpicklable())
    with caplog.at_level(logging.WARNING, logger="flowdeck.results"):
        first = flow.run(context=AGENT_RUN)
    assert first.is_successful()  # a result that cannot be pickled does not fail its task
    assert any("cannot be pickled" in r.getMessage() and "will run the task again" in r.getMessage()
               for r in caplog.records)
    record = record_of(flow, first, drop={("use", -1)})
    calls.clear()

    with caplog.at_level(logging.INFO, logger="flowdeck.agent.execute"):
        restored = initial_task_states(record, flow)
    second = flow.run(context=AGENT_RUN, initial_task_states=restored)

    assert restored == {}
    assert sorted(calls) == ["opted_out", "unpicklable", "use"]
    assert second.result[u].result is True
    messages = [r.getMessage() for r in caplog.records if r.name == "flowdeck.agent.execute"]
    assert "Running task opted_out again: its result is not checkpointed (checkpoint=False), so the earlier " \
           "attempt's result cannot be restored" in messages
    assert any(m.startswith("Running task unpicklable again: the earlier attempt did not checkpoint its result")
               for m in messages)


def test_a_restored_mapped_parent_is_mapped_over_again(results_dir: Path, observer: RecordingObserver) -> None:
    calls: list[str] = []
    flow, t = pipeline(calls)
    # work_item mapped completely; finish_item's third child and total did not finish.
    record = record_of(flow, flow.run(context=AGENT_RUN),
                       drop={("finish_item", -1), ("finish_item", 2), ("total", -1)})
    calls.clear()

    restored = initial_task_states(record, flow)
    second = flow.run(context=AGENT_RUN, initial_task_states=restored, observer=observer)

    assert isinstance(restored["work_item"], Mapped)
    assert sorted(calls) == ["finish_item[30]", "total"]
    work = second.result[t["work_item"]]
    assert isinstance(work, Mapped) and work.result == [10, 20, 30]
    assert [s.result for s in second.result[t["finish_item"]].map_states] == [11, 21, 31]
    assert second.result[t["total"]].result == 63
    # Nothing happened to the restored tasks in this attempt: nothing is reported for them.
    assert observer.names("make_items") == [] and observer.names("work_item") == []
    assert all(observer.names("work_item", i) == [] for i in range(3))
    assert observer.names("finish_item", 2) == ["Running", "Success"]
    assert observer.names("finish_item") == ["Running", "Mapped"]


def test_a_mapped_parent_whose_upstream_runs_again_restores_the_children_that_load(results_dir: Path) -> None:
    calls: list[str] = []
    flow, t = pipeline(calls)
    first = flow.run(context=AGENT_RUN)
    record = record_of(flow, first, drop={("make_items", -1), ("work_item", 1)})
    calls.clear()

    second = flow.run(context=AGENT_RUN, initial_task_states=initial_task_states(record, flow))

    assert sorted(calls) == ["make_items", "work_item[2]"]
    assert second.result[t["work_item"]].result == [10, 20, 30]
    assert second.result[t["total"]].result == 63


def test_skipped_tasks_are_restored_and_parameters_take_this_runs_value(results_dir: Path) -> None:
    calls: list[int] = []

    @task
    def maybe(n: int) -> int:
        calls.append(n)
        if n < 0:
            raise SKIP("negative")
        return n

    with Flow("skips") as flow:
        n = Parameter("n", default=-1)
        m = maybe(n)
    record = record_of(flow, flow.run(context=AGENT_RUN))
    calls.clear()

    restored = initial_task_states(record, flow)

    assert isinstance(restored["maybe"], Skipped) and "n" not in restored
    second = flow.run(parameters={"n": 5}, context=AGENT_RUN, initial_task_states=restored)
    assert calls == [] and isinstance(second.result[m], Skipped) and second.result[n].result == 5


@pytest.mark.parametrize("ref", ["../machine-b/secret.pickle", "/etc/passwd", "run/../../x.pickle", ""])
def test_references_that_leave_the_results_directory_are_not_followed(results_dir: Path, ref: str) -> None:
    flow, _ = pipeline([])
    record = {"id": "r", "task_runs": [{"task_key": "make_items", "map_index": -1, "state_name": "Success",
                                        "result_ref": ref}]}
    assert not is_checkpoint_ref(ref)
    assert initial_task_states(record, flow) == {}


def test_a_user_result_keeps_reading_its_own_locations(tmp_path: Path, results_dir: Path) -> None:
    from flowdeck.engine.results import LocalResult

    calls: list[int] = []

    @task(result=LocalResult(dir=tmp_path / "shared"))
    def produce() -> int:
        calls.append(1)
        return 7

    with Flow("user-result") as flow:
        p = produce()
    first = flow.run(context=AGENT_RUN)
    assert Path(str(first.result[p].result_ref)).is_absolute()  # LocalResult's own, absolute, location
    restored = initial_task_states(record_of(flow, first), flow)
    assert restored["produce"].result == 7 and isinstance(restored["produce"], Success)


def test_with_checkpointing_off_nothing_is_written_and_a_retry_runs_everything_again(
    results_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    flow, t = pipeline(calls)
    first = flow.run(context={**AGENT_RUN, "checkpointing": False})
    assert first.result[t["make_items"]].result_ref is None and not results_dir.exists()
    record = record_of(flow, first, drop={("total", -1)})

    with caplog.at_level(logging.INFO, logger="flowdeck.agent.execute"):
        restored = initial_task_states(record, flow, checkpointing=False)

    assert restored == {"work_item": restored["work_item"], "finish_item": restored["finish_item"]}
    assert "Running task make_items again: its result is not checkpointed (checkpointing is off), so the earlier " \
           "attempt's result cannot be restored" in [r.getMessage() for r in caplog.records]
    calls.clear()
    second = flow.run(context={**AGENT_RUN, "checkpointing": False}, initial_task_states=restored)
    assert second.result[t["total"]].result == 63 and len(calls) == 8
