"""Prefect 1 helpers: ``DateTimeParameter``, ``defaults_from_attrs``, ``pause_task`` and
``flowdeck.utilities.debug`` (``raise_on_exception``, ``is_serializable``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import types
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pendulum
import pytest

from flowdeck import Flow, Parameter, Task, task
from flowdeck.core.parameter import DateTimeParameter
from flowdeck.engine.state import Failed, Paused, Resume, Success, TriggerFailed
from flowdeck.utilities.debug import is_serializable, raise_on_exception
from flowdeck.utilities.tasks import defaults_from_attrs, pause_task


@task
def describe(when: Any) -> tuple[str, str, int]:
    return type(when).__name__, when.isoformat(), when.hour


# --- DateTimeParameter ---------------------------------------------------------------------------------


def test_datetime_parameter_parses_iso_strings_to_pendulum_datetimes() -> None:
    with Flow("dates") as flow:
        when = DateTimeParameter("when")
        info = describe(when)

    state = flow.run(when="2026-12-03T10:30:00+01:00")
    assert state.is_successful()
    value = state.result[when].result
    assert isinstance(value, pendulum.DateTime)
    assert value == datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert value.utcoffset() == timedelta(hours=1)
    assert state.result[info].result == ("DateTime", "2026-12-03T10:30:00+01:00", 10)

    # No offset means UTC, as pendulum reads it.
    naive = flow.run(when="2026-01-02T03:04:05")
    assert naive.result[when].result == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    # A datetime object is accepted and becomes a pendulum DateTime with the same instant.
    given = datetime(2026, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=-4)))
    as_object = flow.run(when=given)
    assert isinstance(as_object.result[when].result, pendulum.DateTime)
    assert as_object.result[when].result == given


def test_datetime_parameter_required_optional_and_invalid_values() -> None:
    with Flow("optional date") as flow:
        since = DateTimeParameter("since", required=False)()  # calling a parameter adds it to the flow
        until = DateTimeParameter("until", default="2026-12-31T00:00:00Z")()
    state = flow.run()
    assert isinstance(state.result[since], Success)
    assert state.result[since].result is None
    assert state.result[until].result == datetime(2026, 12, 31, tzinfo=UTC)
    assert since.serialize()["type"] == "str"

    with Flow("required date") as flow:
        when = DateTimeParameter("when")
        info = describe(when)
    assert when.required
    with pytest.raises(ValueError, match="when"):
        flow.run()
    bad = flow.run(when="not a date")
    assert isinstance(bad.result[when], Failed)
    assert isinstance(bad.result[info], TriggerFailed)


def test_parameter_default_none_is_optional_as_in_prefect_1() -> None:
    @task
    def show(value: Any) -> Any:
        return value

    with Flow("defaults") as flow:
        optional = Parameter("optional", default=None)
        required = Parameter("required")
        shown = show(optional)
        show(required)

    assert not optional.required
    assert required.required
    state = flow.run(required=1)
    assert isinstance(state.result[shown], Success)
    assert state.result[shown].result is None
    with pytest.raises(ValueError, match="required"):
        flow.run()


# --- defaults_from_attrs -------------------------------------------------------------------------------


class Greet(Task):
    def __init__(self, greeting: str = "Hello", punctuation: str = "!", **kwargs: Any) -> None:
        self.greeting = greeting
        self.punctuation = punctuation
        super().__init__(**kwargs)

    @defaults_from_attrs("greeting", "punctuation")
    def run(self, name: str, greeting: str | None = None, punctuation: str | None = None) -> str:
        return f"{greeting}, {name}{punctuation}"


def test_defaults_from_attrs_in_a_flow() -> None:
    template = Greet(greeting="Hi")
    with Flow("greetings") as flow:
        who = Parameter("who", default="Ada")
        plain = template(who)
        overridden = template(who, greeting="Bonjour", punctuation=".")
        from_task = template(who, punctuation=Greet(greeting="?")("ignored")[-1:])

    state = flow.run()
    assert state.result[plain].result == "Hi, Ada!"
    assert state.result[overridden].result == "Bonjour, Ada."
    assert state.result[from_task].result == "Hi, Ada!"
    # The run signature seen by the flow is the wrapped method's.
    assert Greet().inputs() == {
        "name": {"required": True},
        "greeting": {"required": False},
        "punctuation": {"required": False},
    }


def test_defaults_from_attrs_called_directly_keeps_explicit_values() -> None:
    greet = Greet(greeting="Hey", punctuation="?")
    assert greet.run("Bob") == "Hey, Bob?"
    assert greet.run("Bob", "Yo") == "Yo, Bob?"  # positional arguments count as given
    assert greet.run(name="Bob", greeting=None) == "None, Bob?"  # explicit None is kept, as in Prefect 1


def test_defaults_from_attrs_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="no argument"):

        class Wrong(Task):
            @defaults_from_attrs("missing")
            def run(self, x: int = 0) -> int:
                return x

    with pytest.raises(TypeError, match="attribute names"):
        defaults_from_attrs(lambda self: None)  # type: ignore[arg-type]


# --- pause_task ----------------------------------------------------------------------------------------


def test_pause_task_ends_paused_and_a_resumed_run_completes() -> None:
    calls: list[int] = []

    @task
    def approve(x: int) -> int:
        calls.append(x)
        pause_task("waiting for approval")
        return x * 10

    @task
    def publish(value: int) -> str:
        return f"published {value}"

    with Flow("approval") as flow:
        approved = approve(4)
        published = publish(approved)

    state = flow.run()
    paused = state.result[approved]
    assert isinstance(paused, Paused)
    assert paused.message == "waiting for approval"
    assert not state.is_finished()
    assert state.is_paused()
    assert not state.result[published].is_finished()

    resumed = flow.run(task_states={approved: Resume()})
    assert isinstance(resumed.result[approved], Success)
    assert resumed.result[approved].result == 40
    assert resumed.result[published].result == "published 40"
    assert calls == [4, 4]  # the whole task ran again after resuming


def test_pause_task_with_a_duration_sets_the_resume_time() -> None:
    @task
    def wait_a_bit() -> None:
        pause_task(duration=timedelta(hours=1))

    with Flow("timed pause") as flow:
        waiting = wait_a_bit()

    before = datetime.now(UTC)
    state = flow.run()
    paused = state.result[waiting]
    assert isinstance(paused, Paused)
    assert paused.message == "Pause signal raised during task execution."
    assert before + timedelta(minutes=59) < paused.start_time <= datetime.now(UTC) + timedelta(hours=1)


# --- debug ---------------------------------------------------------------------------------------------


class BoomError(Exception):
    pass


@task
def divide(x: int) -> float:
    return 1 / x


@task
def boom() -> None:
    raise BoomError("from the task")


def test_raise_on_exception_raises_the_tasks_error() -> None:
    with Flow("debug") as flow:
        divide(0)
    # Without it the error is trapped in the task's state.
    state = flow.run()
    assert state.is_failed()
    with raise_on_exception(), pytest.raises(ZeroDivisionError):
        flow.run()

    with Flow("custom error") as other:
        boom()
    with raise_on_exception(), pytest.raises(BoomError, match="from the task"):
        other.run()
    # Only inside the block.
    assert other.run().is_failed()


def test_is_serializable_checks_a_fresh_process() -> None:
    assert is_serializable({"numbers": [1, 2, 3], "when": datetime(2026, 1, 1, tzinfo=UTC)})
    assert is_serializable(lambda x: x + 1)  # cloudpickle sends functions by value

    with Flow("serializable") as flow:
        divide(2)
    assert is_serializable(flow)

    assert not is_serializable(threading.Lock())
    with pytest.raises(TypeError):
        is_serializable(threading.Lock(), raise_on_error=True)

    # Pickles here (by reference to a module only this process has) but cannot load elsewhere.
    only_here = types.ModuleType("flowdeck_module_only_in_this_process")
    exec("class Thing:\n    pass\n", only_here.__dict__)  # noqa: S102
    sys.modules[only_here.__name__] = only_here
    try:
        thing = only_here.Thing()
        assert not is_serializable(thing)
        with pytest.raises(subprocess.CalledProcessError) as info:
            is_serializable(thing, raise_on_error=True)
        assert b"flowdeck_module_only_in_this_process" in info.value.output
    finally:
        del sys.modules[only_here.__name__]
