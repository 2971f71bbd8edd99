"""The shared serializers of the hot paths (``core.serializers.represent`` and ``validated``) answer
exactly what a serializer built per request answers, also after errors and from many threads."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from core.serializers import represent, validated
from core.tenancy import workspace_scope
from orchestration.api import serializers as s
from orchestration.selectors import claimed_runs
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, TaskRunFactory


@pytest.mark.django_db
def test_represent_renders_what_the_serializer_renders(world_a):
    version = FlowVersionFactory(flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace,
                                 parameters=[{"name": "n", "default": 3}])
    runs = [FlowRunFactory(flow_version=version, parameters={"n": i}, labels=["a"],
                           scheduled_start=timezone.now() + timedelta(seconds=i)) for i in range(3)]
    TaskRunFactory(flow_run=runs[1], task_key="load", map_index=2)
    with workspace_scope([world_a.workspace.pk]):
        runs = claimed_runs(runs)
    assert represent(s.FlowRunOut, runs[0]) == s.FlowRunOut(runs[0]).data
    assert represent(s.ClaimedRunOut, runs, many=True) == s.ClaimedRunOut(runs, many=True).data
    assert represent(s.ClaimedRunOut, runs, many=True)[1]["task_runs"][0]["map_index"] == 2

    # from many threads at once, each rendering other runs: every answer is the serializer's
    expected = {str(run.pk): dict(s.ClaimedRunOut(run).data) for run in runs}
    wrong: list[object] = []

    def render(run) -> None:  # type: ignore[no-untyped-def]
        for _ in range(50):
            if represent(s.ClaimedRunOut, run) != expected[str(run.pk)]:
                wrong.append(run.pk)

    threads = [threading.Thread(target=render, args=(runs[i % 3],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_validated_reuses_a_serializer_without_carrying_anything_over():
    good = {"state": {"type": "RUNNING"}, "attempt": 2}
    assert validated(s.SetStateIn, good) == {"state": {"type": "RUNNING", "name": "", "message": "",
                                                       "result_ref": ""}, "attempt": 2}
    with pytest.raises(ValidationError) as refused:
        validated(s.SetStateIn, {"state": {"type": "NOPE"}, "attempt": 0})
    assert set(refused.value.detail) == {"state", "attempt"}
    with pytest.raises(ValidationError) as refused:
        validated(s.SetStateIn, {"state": {"type": "RUNNING"}, "extra": 1})
    assert set(refused.value.detail) == {"extra"}
    # the next body is judged on its own: no error, no value left from the previous ones
    assert validated(s.SetStateIn, {"state": {"type": "COMPLETED", "message": "done"}}) == {
        "state": {"type": "COMPLETED", "name": "", "message": "done", "result_ref": ""}}
    # defaults are made per body: changing one answer's list never shows in the next
    first = validated(s.AgentRegisterIn, {"name": "a", "type": "process"})
    first["labels"].append("changed")
    assert validated(s.AgentRegisterIn, {"name": "b", "type": "process"})["labels"] == []


def test_validated_from_many_threads_answers_each_its_own_body():
    wrong: list[object] = []

    def check(n: int) -> None:
        for i in range(200):
            body = {"attempt": n * 1000 + i, "reports": [{"task_key": f"t{n}-{i}", "state": {"type": "RUNNING"}}]}
            data = validated(s.TaskRunBatchIn, body)
            if data["attempt"] != body["attempt"] or data["reports"][0]["task_key"] != f"t{n}-{i}":
                wrong.append((n, i, data))

    threads = [threading.Thread(target=check, args=(n + 1,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
