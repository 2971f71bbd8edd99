"""How queued reports become batches, and the on-disk spool that keeps them while the server is away."""

from __future__ import annotations

from pathlib import Path

from flowdeck.reporting.batches import Batch, Item, form_batches, split
from flowdeck.reporting.spool import Spool


def task(key: str, state: str = "RUNNING", name: str = "Running", message: object = None, ref: str = "") -> Item:
    return ("t", key, -1, state, name, message, ref)


def log(seq: int, task_key: str | None = None) -> Item:
    return ("l", seq, 20, 1_767_225_600.5, "user", f"line {seq}", task_key, -1 if task_key else None)


def flow(state: str, name: str) -> Item:
    return ("f", state, name, None, "")


def test_flow_states_are_barriers_and_task_reports_go_before_log_lines() -> None:
    items = [flow("RUNNING", "Running"), log(1), task("a"), log(2), task("a", "COMPLETED", "Success"),
             flow("COMPLETED", "Success"), log(3)]
    batches = form_batches(items, max_task_batch=100, max_log_batch=100, log_task_keys=True)
    assert [(b.kind, len(b)) for b in batches] == [("flow_state", 1), ("task_runs", 2), ("logs", 2),
                                                   ("flow_state", 1), ("logs", 1)]
    assert batches[0].payload == {"type": "RUNNING", "name": "Running"}
    assert [r["state"]["type"] for r in batches[1].payload] == ["RUNNING", "COMPLETED"]
    assert [line["sequence"] for line in batches[2].payload] == [1, 2]
    assert batches[2].payload[0]["timestamp"] == "2026-01-01T00:00:00.500000+00:00"
    assert len({b.idempotency_key for b in batches}) == len(batches)


def test_batches_respect_the_size_limits_in_order() -> None:
    items = [task(f"t{i}") for i in range(12)] + [log(i) for i in range(1, 8)]
    batches = form_batches(items, max_task_batch=5, max_log_batch=3, log_task_keys=True)
    assert [(b.kind, len(b)) for b in batches] == [("task_runs", 5), ("task_runs", 5), ("task_runs", 2),
                                                   ("logs", 3), ("logs", 3), ("logs", 1)]
    assert [r["task_key"] for b in batches[:3] for r in b.payload] == [f"t{i}" for i in range(12)]


def test_states_are_trimmed_to_what_the_server_accepts() -> None:
    [batch] = form_batches([task("a", "FAILED", "X" * 40, ValueError("bad " * 5000), "r" * 1001)],
                           max_task_batch=10, max_log_batch=10, log_task_keys=True)
    state = batch.payload[0]["state"]
    assert state["type"] == "FAILED" and len(state["name"]) == 32
    assert len(state["message"]) == 10_000 and state["message"].startswith("bad bad")
    assert "result_ref" not in state  # a reference too long to be one is not sent
    [plain] = form_batches([task("b", "COMPLETED", "Success", None, "/r/b")], max_task_batch=10,
                           max_log_batch=10, log_task_keys=True)
    assert plain.payload == [{"task_key": "b", "map_index": -1,
                              "state": {"type": "COMPLETED", "name": "Success", "result_ref": "/r/b"}}]


def test_log_lines_carry_their_task_unless_turned_off() -> None:
    [with_keys] = form_batches([log(1, "extract")], max_task_batch=10, max_log_batch=10, log_task_keys=True)
    assert with_keys.payload[0]["task_key"] == "extract" and with_keys.payload[0]["map_index"] == -1
    [without] = form_batches([log(1, "extract")], max_task_batch=10, max_log_batch=10, log_task_keys=False)
    assert "task_key" not in without.payload[0] and "map_index" not in without.payload[0]


def test_split_halves_have_stable_keys() -> None:
    batch = Batch("logs", [{"sequence": i} for i in range(5)], "key-1")
    first, second = split(batch)
    assert (first.payload, second.payload) == (batch.payload[:2], batch.payload[2:])
    assert (first.idempotency_key, second.idempotency_key) == ("key-1-a", "key-1-b")
    assert split(batch)[0].idempotency_key == first.idempotency_key


def test_spool_is_an_ordered_queue_that_survives_a_restart(tmp_path: Path) -> None:
    directory = tmp_path / "run.1"
    spool = Spool(directory)
    for n in range(3):
        spool.append(Batch("logs", [{"sequence": n}], f"k{n}"))
    assert len(spool) == 3 and directory.stat().st_mode & 0o777 == 0o700
    head = spool.peek()
    assert head is not None and head.idempotency_key == "k0"
    spool.pop()

    again = Spool(directory)  # a new process finds the same batches, same order, same keys
    assert [b.idempotency_key for b in again.batches()] == ["k1", "k2"]
    again.append(Batch("task_runs", [{"task_key": "a"}], "k3"))
    assert [b.idempotency_key for b in again.batches()] == ["k1", "k2", "k3"]
    again.rewrite_head(Batch("logs", [{"sequence": 1}], "k1-new"))
    assert Spool(directory).peek() == Batch("logs", [{"sequence": 1}], "k1-new")
    assert not [p for p in directory.iterdir() if not p.name.endswith(".json")]  # no temporary files left
    again.clear()
    assert not directory.exists()
