"""Loading a flow from its storage reference (what the agent's flow-run process does) and
``flow.visualize()``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowdeck import Flow, task
from flowdeck.engine.state import Success
from flowdeck.storage import load_flow

from . import sample_flows

SCRIPT = textwrap.dedent(
    """
    from flowdeck import Flow, Parameter, task

    @task
    def greet(name):
        return f"hello {name}"

    with Flow("greeter") as flow:
        greeting = greet(Parameter("name", default="world"))

    if __name__ == "__main__":
        # `python greeter.py`: print what would be registered. Exits with 3 so that loading the flow
        # (which must not run this block) would fail loudly if it did.
        import json

        print(json.dumps(flow.serialize()["storage"]))
        raise SystemExit(3)
    """
)


def test_load_flow_from_a_module_finds_it_by_name() -> None:
    storage = sample_flows.doubler.serialize()["storage"]
    assert storage == {"type": "module", "module": "tests.sdk.authoring.sample_flows", "flow_name": "doubler"}
    flow = load_flow(storage)
    assert flow is sample_flows.doubler
    assert flow.run(value=5).result[sample_flows.doubled].result == 10
    assert load_flow({**storage, "flow_name": "other"}) is sample_flows.other


def test_load_flow_module_errors_are_actionable() -> None:
    with pytest.raises(ValueError, match="Cannot import the flow's module 'no_such_module'"):
        load_flow({"type": "module", "module": "no_such_module", "flow_name": "x"})
    with pytest.raises(ValueError, match=r"no flow named 'missing'.*flows found: 'doubler', 'other'"):
        load_flow({"type": "module", "module": "tests.sdk.authoring.sample_flows", "flow_name": "missing"})
    with pytest.raises(ValueError, match="several flows"):
        load_flow({"type": "module", "module": "tests.sdk.authoring.sample_flows"})
    with pytest.raises(ValueError, match="Unknown storage type 's3'"):
        load_flow({"type": "s3"})


def test_a_flow_defined_in_a_script_registers_file_storage_and_loads_from_it(tmp_path: Path) -> None:
    script = tmp_path / "greeter.py"
    script.write_text(SCRIPT)
    # Registered from the script itself (python greeter.py → __main__): file storage with its path.
    dump = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert dump.returncode == 3, dump.stderr
    assert json.loads(dump.stdout) == {"type": "file", "path": str(script), "flow_name": "greeter"}
    flow = load_flow({"type": "file", "path": str(script), "flow_name": "greeter"})
    assert flow.serialize()["storage"] == {"type": "file", "path": str(script), "flow_name": "greeter"}
    state = flow.run(name="agent")
    assert [s.result for s in state.result.values() if s.result != "agent"] == ["hello agent"]
    with pytest.raises(ValueError, match="does not exist on this machine"):
        load_flow({"type": "file", "path": str(tmp_path / "gone.py")})


def test_load_flow_from_a_git_repository(tmp_path: Path) -> None:
    # A real (local) repository: the agent clones it and runs the script at `path`.
    repo = tmp_path / "repo"
    (repo / "flows").mkdir(parents=True)
    (repo / "flows" / "greeter.py").write_text(SCRIPT)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "flows"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    storage = {"type": "git", "repo": str(repo), "path": "flows/greeter.py", "ref": "main", "flow_name": "greeter"}
    flow = load_flow(storage, checkout_dir=str(tmp_path / "checkout"))
    assert flow.name == "greeter"
    assert (tmp_path / "checkout" / "flows" / "greeter.py").exists()
    with pytest.raises(ValueError, match="Cannot fetch"):
        load_flow({**storage, "ref": "no-such-branch"}, checkout_dir=str(tmp_path / "checkout2"))


def test_image_storage_loads_the_module_inside_the_image() -> None:
    flow = load_flow({"type": "image", "image": "acme/etl:3", "module": "tests.sdk.authoring.sample_flows",
                      "flow_name": "doubler"})
    assert flow is sample_flows.doubler


@task
def first() -> int:
    return 1


@task
def second(x: int) -> int:
    return x + 1


def small_flow() -> Flow:
    with Flow("Viz Flow") as flow:
        a = first()
        second.map([a, a])
        second(a)
    return flow


def test_visualize_writes_a_dot_file(tmp_path: Path) -> None:
    flow = small_flow()
    path = flow.visualize(filename=tmp_path / "graph")
    assert path == tmp_path / "graph.dot"
    dot = path.read_text()
    assert dot.startswith('digraph "Viz Flow" {')
    assert '"first" [label="first", shape=ellipse];' in dot
    assert '"second" [label="second", shape=box];' in dot  # mapped tasks are boxes
    assert '"first" -> "second-2" [label="x"];' in dot
    # A list holding tasks becomes a List task; mapping over it is a dashed edge.
    assert '"list" -> "second" [label="x", style=dashed];' in dot


def test_visualize_colours_nodes_by_state_and_defaults_to_a_temp_file() -> None:
    flow = small_flow()
    state = flow.run()
    path = flow.visualize(flow_state=state)
    assert path.name == "flowdeck-viz-flow.dot"
    assert f'fillcolor="{Success.color}"' in path.read_text()


def test_rendering_an_image_without_graphviz_is_a_clear_error_after_writing_the_dot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert shutil.which("dot") is None
    with pytest.raises(RuntimeError, match=r"needs Graphviz's `dot` program.*format='dot'"):
        small_flow().visualize(filename=tmp_path / "graph.png", format="png")
    assert (tmp_path / "graph.dot").exists()
    with pytest.raises(ValueError, match="Unknown format 'bmpx'"):
        small_flow().visualize(filename=tmp_path / "g", format="bmpx")


def test_rendering_uses_graphviz_dot_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in `dot` program proves the call: the format flag, the DOT input and the output path.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text('#!/bin/sh\necho "$@" > "$4"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    image = small_flow().visualize(filename=tmp_path / "graph", format="svg")
    assert image == tmp_path / "graph.svg"
    assert image.read_text().split() == ["-Tsvg", str(tmp_path / "graph.dot"), "-o", str(image)]
