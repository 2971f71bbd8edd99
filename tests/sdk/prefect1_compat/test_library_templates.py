"""``flowdeck.tasks.templates``: ``JinjaTemplate`` and ``StringFormatter`` render with
``flowdeck.context`` plus the task's inputs (which win), as Prefect 1's; ``JinjaTemplate`` also
reads a template file; without Jinja2 the error says which extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import flowdeck
from flowdeck import Flow, Parameter, task
from flowdeck.tasks.templates import JinjaTemplate, StringFormatter
from flowdeck.tasks.templates.jinja2 import JinjaTemplate as FromModule


@task
def rows() -> list[dict[str, int]]:
    return [{"id": 1, "n": 10}, {"id": 2, "n": 20}]


def test_jinja_template_renders_upstream_results_and_context() -> None:
    report = JinjaTemplate(
        name="report",
        template="{{ flow_name }} for {{ parameters.team }}:{% for r in rows %} #{{ r.id }}={{ r.n }}{% endfor %}",
    )
    with Flow("daily-report") as flow:
        text = report(rows=rows())
    flow.add_task(Parameter("team", default="data"))
    state = flow.run(team="ops")
    assert state.is_successful()
    assert state.result[text].result == "daily-report for ops: #1=10 #2=20"


def test_inputs_win_over_context_values_and_call_time_template_wins() -> None:
    with Flow("names") as flow:
        own = JinjaTemplate(name="own", template="{{ flow_name }}")(flow_name="given")
        swapped = JinjaTemplate(name="swapped", template="unused")(template="{{ x * 2 }}", x=21)
        formatted = StringFormatter(name="fmt", template="{flow_name}/{x:03d}")(x=7)
    state = flow.run()
    assert state.result[own].result == "given"
    assert state.result[swapped].result == "42"
    assert state.result[formatted].result == "names/007"


def test_a_template_file_is_read_when_the_task_runs(tmp_path: Path) -> None:
    (tmp_path / "header.j2").write_text("== {{ title }} ==\n")
    page = tmp_path / "page.j2"
    page.write_text('{% include "header.j2" %}{{ rows | length }} rows in {{ flow_name }}\n')
    with Flow("files") as flow:
        text = JinjaTemplate(template_file=page)(title="Load", rows=rows())
    page.write_text(page.read_text().replace("rows in", "rows loaded by"))  # read at run time, not before
    state = flow.run()
    assert state.result[text].result == "== Load ==\n2 rows loaded by files\n"


def test_outside_a_flow_run_renders_with_its_arguments() -> None:
    assert JinjaTemplate(template="Hi {{ who }}!").run(who="Marvin") == "Hi Marvin!"
    with flowdeck.context(today="2026-12-03"):
        assert StringFormatter(template="{today}: {n}").run(n=3) == "2026-12-03: 3"
    with pytest.raises(ValueError, match="needs a template"):
        JinjaTemplate().run()
    assert FromModule is JinjaTemplate


def test_without_jinja2_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flow is defined and validated without Jinja2; only rendering needs it.
    with Flow("no-jinja") as flow:
        text = JinjaTemplate(template="{{ 1 }}")()
    monkeypatch.setitem(sys.modules, "jinja2", None)  # what an environment without it gives an import
    state = flow.run()
    assert state.result[text].is_failed()
    assert "pip install 'flowdeck[templates]'" in str(state.result[text].message)
