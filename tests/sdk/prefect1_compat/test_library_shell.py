"""``flowdeck.tasks.shell.ShellTask`` behaves as Prefect 1's: real commands run by a real shell in a
flow; the last line (or every line) of output is the result; ``env`` and ``helper_script`` reach the
command; a non-zero exit fails the task with ``Command failed with exit code N``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flowdeck import Flow, Parameter, task
from flowdeck.engine.state import Failed, Success
from flowdeck.tasks.shell import ShellTask


def test_the_last_line_of_output_is_the_result() -> None:
    with Flow("shell") as flow:
        out = ShellTask(name="count")(command="echo one; echo two; echo three")
    state = flow.run()
    assert state.is_successful()
    assert isinstance(state.result[out], Success)
    assert state.result[out].result == "three"


def test_return_all_gives_every_line_and_nothing_printed_gives_none() -> None:
    with Flow("shell") as flow:
        lines = ShellTask(return_all=True)(command="printf 'a\\nb\\n\\nc\\n'")
        silent = ShellTask(name="silent")(command="true")
        silent_all = ShellTask(name="silent all", return_all=True)(command="true")
    state = flow.run()
    assert state.result[lines].result == ["a", "b", "", "c"]
    assert state.result[silent].result is None
    assert state.result[silent_all].result == []


def test_env_is_added_to_the_environment_and_can_be_given_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_PARENT", "inherited")
    greet = ShellTask(name="greet", command='echo "$GREETING $NAME $FROM_PARENT"', env={"GREETING": "hello"})
    with Flow("shell") as flow:
        default = greet(env={"GREETING": "hello", "NAME": "default"})
        name = Parameter("name", default="ada")
        from_param = ShellTask(name="param")(command='echo "$NAME"', env={"NAME": "x"})
        upstream = ShellTask(name="upstream")(command='echo "$NAME"', env=dict_of(name))
    state = flow.run()
    assert state.result[default].result == "hello default inherited"
    assert state.result[from_param].result == "x"
    assert state.result[upstream].result == "ada"


@task
def dict_of(name: str) -> dict[str, str]:
    return {"NAME": name}


def test_helper_script_runs_first_in_the_same_shell(tmp_path: Path) -> None:
    (tmp_path / "marker.txt").write_text("found it\n")
    helper = f"cd {tmp_path}\nshout() {{ echo \"$1\" | tr a-z A-Z; }}"
    with Flow("shell") as flow:
        cat = ShellTask(name="cat", helper_script=helper)(command="cat marker.txt")
        shout = ShellTask(name="shout", helper_script=helper)(command="shout quiet")
    state = flow.run()
    assert state.result[cat].result == "found it"
    assert state.result[shout].result == "QUIET"


def test_the_shell_can_be_chosen() -> None:
    with Flow("shell") as flow:
        # ShellTask writes the command to a file and hands it to the chosen shell.
        out = ShellTask(shell="sh")(command="echo $((6 * 7))")
    assert flow.run().result[out].result == "42"


def test_a_failing_command_fails_the_task_with_its_exit_code(caplog: pytest.LogCaptureFixture) -> None:
    @task
    def after(x: str) -> str:
        return x

    with Flow("shell") as flow:
        bad = ShellTask(name="bad")(command="echo working; echo broken >&2; exit 3")
        downstream = after(bad)
    with caplog.at_level(logging.ERROR):
        state = flow.run()
    assert state.is_failed()
    failed = state.result[bad]
    assert isinstance(failed, Failed)
    assert failed.message == "Command failed with exit code 3"
    assert failed.result == "broken"  # stderr is in the same stream: the last line
    assert state.result[downstream].is_failed()  # TriggerFailed downstream, as for any failure
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "Command failed with exit code 3" in errors
    assert "broken" not in errors  # log_stderr is off


def test_log_stderr_logs_the_output_of_a_failed_command(caplog: pytest.LogCaptureFixture) -> None:
    with Flow("shell") as flow:
        last = ShellTask(name="last", log_stderr=True)(command="echo first; echo 'no such table' >&2; exit 2")
        every = ShellTask(name="every", log_stderr=True, return_all=True)(command="echo one; echo two >&2; exit 1")
    with caplog.at_level(logging.ERROR):
        state = flow.run()
    assert state.result[last].message == "Command failed with exit code 2"
    assert state.result[every].message == "Command failed with exit code 1"
    assert state.result[every].result == ["one", "two"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "no such table" in errors
    assert "one\ntwo" in errors


def test_stream_output_logs_each_line_as_it_comes(caplog: pytest.LogCaptureFixture) -> None:
    with Flow("shell") as flow:
        ShellTask(name="info", stream_output=True)(command="echo alpha; echo beta")
        ShellTask(name="warn", stream_output="WARNING")(command="echo gamma")
        ShellTask(name="quiet")(command="echo delta")
    with caplog.at_level(logging.DEBUG):
        assert flow.run().is_successful()
    logged = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("flowdeck.Task: info", logging.INFO, "alpha") in logged
    assert ("flowdeck.Task: info", logging.INFO, "beta") in logged
    assert ("flowdeck.Task: warn", logging.WARNING, "gamma") in logged
    assert not any(message == "delta" for _, _, message in logged)


def test_a_missing_command_is_an_error_and_run_works_outside_a_flow() -> None:
    with pytest.raises(TypeError, match="missing required argument: 'command'"):
        ShellTask().run()
    assert ShellTask(command="echo direct").run() == "direct"
    with Flow("shell") as flow:
        nothing = ShellTask(name="nothing")()
    state = flow.run()
    assert state.result[nothing].is_failed()
    assert "missing required argument: 'command'" in str(state.result[nothing].message)
    with pytest.raises(ValueError, match="stream_output"):
        ShellTask(stream_output="LOUD")
