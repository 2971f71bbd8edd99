"""Prefect 1's result modules: ``flowdeck.engine.result`` (``Result``, ``NoResult``),
``PrefectResult`` (the value, as JSON, is the location: the state carries it, so a restart reads it
back from the reference alone) and ``S3Result`` (boto3 behind the ``aws`` extra)."""

from __future__ import annotations

import io
import json
import logging
import pickle
import sys
from typing import Any

import pytest

from flowdeck import Flow, task
from flowdeck.engine.result import NoResult, NoResultType, Result
from flowdeck.engine.results import LocalResult, PrefectResult, S3Result
from flowdeck.engine.results.base import Result as BaseResult
from flowdeck.engine.serializers import JSONSerializer, PickleSerializer
from flowdeck.engine.state import Cached, Success

RUNS: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()


@task(result=PrefectResult())
def summary(n: int) -> dict[str, Any]:
    RUNS.append("summary")
    return {"n": n, "squares": [i * i for i in range(n)]}


@task
def total(s: dict[str, Any]) -> int:
    return sum(s["squares"])


def test_prefect1_result_module_names() -> None:
    assert Result is BaseResult
    assert isinstance(NoResult, NoResultType) and isinstance(NoResult, Result)
    assert issubclass(PrefectResult, Result) and issubclass(S3Result, Result) and issubclass(LocalResult, Result)


def test_prefect_result_keeps_the_json_in_the_state_and_reads_it_back() -> None:
    with Flow("prefect-result") as flow:
        s = summary(4)
        t = total(s)
    state = flow.run()
    assert state.is_successful() and state.result[t].result == 14
    ref = state.result[s].result_ref
    assert json.loads(str(ref)) == {"n": 4, "squares": [0, 1, 4, 9]}  # the location *is* the value
    assert PrefectResult().read(str(ref)).value == {"n": 4, "squares": [0, 1, 4, 9]}
    assert PrefectResult().read(str(ref)).location == ref

    # A restart knows only the reference (what the server kept): the value comes back from it.
    restarted = flow.run(initial_task_states={"summary": Success(result_ref=ref)})
    assert RUNS == ["summary"]
    assert restarted.result[t].result == 14
    assert restarted.result[s].result == {"n": 4, "squares": [0, 1, 4, 9]}


def test_a_flow_level_prefect_result_checkpoints_every_task() -> None:
    @task
    def word() -> str:
        return "héllo"

    @task
    def shout(w: str) -> str:
        return w.upper() + "!"

    with Flow("flow-result", result=PrefectResult()) as flow:
        w = word()
        s = shout(w)
    state = flow.run()
    assert json.loads(str(state.result[w].result_ref)) == "héllo"
    assert json.loads(str(state.result[s].result_ref)) == "HÉLLO!"


def test_a_value_that_is_not_json_fails_the_task() -> None:
    @task(result=PrefectResult())
    def not_json() -> object:
        return {1, 2}

    with Flow("not-json") as flow:
        bad = not_json()
    state = flow.run()
    assert state.result[bad].is_failed()
    assert "not JSON serializable" in str(state.result[bad].message)


def test_only_json_serializers_and_large_values_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TypeError, match="only supports a JSONSerializer"):
        PrefectResult(serializer=PickleSerializer())
    assert isinstance(PrefectResult().serializer, JSONSerializer)
    assert PrefectResult().exists('{"a": 1}') and PrefectResult().exists("3")
    assert not PrefectResult().exists("not json")

    @task(result=PrefectResult())
    def big() -> str:
        return "x" * 2_000

    with Flow("big") as flow:
        b = big()
    with caplog.at_level(logging.WARNING, logger="flowdeck.results"):
        state = flow.run()
    assert state.result[b].is_successful() and len(str(state.result[b].result_ref)) == 2_002
    assert any("keeps result references of at most 1000" in r.getMessage() for r in caplog.records)


# --- S3Result -------------------------------------------------------------------------------------


def test_s3_result_without_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an environment without boto3 gives an import
    result = S3Result(bucket="results")  # defining a flow with it needs no boto3
    with Flow("s3") as flow:
        s = task(lambda: 1, name="one", result=result)()
    state = flow.run()
    assert state.result[s].is_failed()
    assert "S3Result needs boto3" in str(state.result[s].message)
    assert "pip install 'flowdeck[aws]'" in str(state.result[s].message)
    with pytest.raises(ImportError, match=r"flowdeck\[aws\]"):
        _ = S3Result(bucket="results").client


def test_s3_result_locations_are_keys_filled_from_the_context() -> None:
    result = S3Result(bucket="lake", location="{flow_name}/{task_name}/{today}.pickle",
                      boto3_kwargs={"endpoint_url": "http://127.0.0.1:9000"})
    filled = result.format(flow_name="etl", task_name="load", today="2026-12-03")
    assert filled.location == "etl/load/2026-12-03.pickle"
    assert isinstance(filled, S3Result) and filled.uri == "s3://lake/etl/load/2026-12-03.pickle"
    assert result.location == "{flow_name}/{task_name}/{today}.pickle"  # format() leaves the original
    assert filled.boto3_kwargs == {"endpoint_url": "http://127.0.0.1:9000"}
    with pytest.raises(KeyError, match="uses {missing}"):
        S3Result(bucket="lake", location="{missing}").format(flow_name="etl")
    with pytest.raises(ValueError, match="needs a bucket"):
        S3Result(bucket="")


class StandInS3:
    """A stand-in for boto3's S3 client (boto3 is not installed here): the three calls S3Result
    makes, with S3's answer for a missing key (botocore's ClientError carries it in ``.response``)."""

    class NotFound(Exception):
        def __init__(self) -> None:
            super().__init__("Not Found")
            self.response = {"Error": {"Code": "404", "Message": "Not Found"}}

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803 — boto3's names
        self.objects[(Bucket, Key)] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        if (Bucket, Key) not in self.objects:
            raise self.NotFound()
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        if (Bucket, Key) not in self.objects:
            raise self.NotFound()
        return {"ContentLength": len(self.objects[(Bucket, Key)])}


def test_s3_result_writes_reads_and_finds_targets_through_the_client() -> None:
    s3 = StandInS3()
    result = S3Result(bucket="lake")
    result.client = s3

    @task(result=result, target="{flow_name}/{task_name}.pickle")
    def expensive(n: int) -> list[int]:
        RUNS.append("expensive")
        return list(range(n))

    @task(result=result)
    def doubled(values: list[int]) -> list[int]:
        return [v * 2 for v in values]

    with Flow("lake") as flow:
        e = expensive(3)
        d = doubled(e)
    first = flow.run()
    assert first.is_successful() and first.result[d].result == [0, 2, 4]
    assert first.result[e].result_ref == "lake/expensive.pickle"
    assert pickle.loads(s3.objects[("lake", "lake/expensive.pickle")]) == [0, 1, 2]
    doubled_key = str(first.result[d].result_ref)
    assert doubled_key.startswith("lake/doubled-") and doubled_key.endswith(".result")
    assert result.read(doubled_key).value == [0, 2, 4]

    second = flow.run()  # the target exists: the task is not run again
    assert RUNS == ["expensive"]
    assert isinstance(second.result[e], Cached) and second.result[e].result == [0, 1, 2]
    assert not result.exists("lake/nothing-here.pickle")
    with pytest.raises(StandInS3.NotFound):
        result.read("lake/nothing-here.pickle")


def test_s3_result_does_not_pickle_its_client_but_copies_share_it() -> None:
    result = S3Result(bucket="lake", boto3_kwargs={"region_name": "eu-west-1"})
    result.client = StandInS3()
    assert result.copy().client is result.client
    clone = pickle.loads(pickle.dumps(result))  # what a process pool's worker receives
    assert clone._client is None and clone.bucket == "lake" and clone.boto3_kwargs == {"region_name": "eu-west-1"}
