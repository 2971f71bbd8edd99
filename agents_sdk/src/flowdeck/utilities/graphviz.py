"""``Flow.visualize()``: the task graph as Graphviz DOT, rendered to an image when Graphviz is installed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow
    from flowdeck.engine.state import State

IMAGE_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "eps", "ps")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def flow_to_dot(flow: Flow, flow_state: State | None = None, horizontal: bool = False) -> str:
    """DOT source: one node per task (mapped tasks as boxes), one arrow per edge labelled with its key
    (dashed when mapped); nodes are filled with their state's colour when ``flow_state`` is given."""
    states = flow_state.result if flow_state is not None and isinstance(flow_state.result, dict) else {}
    lines = [f"digraph {_quote(flow.name)} {{"]
    if horizontal:
        lines.append("    rankdir=LR;")
    lines.append("    node [fontname=Helvetica];")
    for task in flow._order:
        key = flow.key_of(task)
        attrs = [f"label={_quote(task.name)}", f"shape={'box' if flow.is_mapped(task) else 'ellipse'}"]
        state = states.get(task)
        if state is not None:
            attrs += ["style=filled", f"fillcolor={_quote(state.color)}", f"tooltip={_quote(state.name)}"]
        lines.append(f"    {_quote(key)} [{', '.join(attrs)}];")
    for edge in sorted(
        flow.edges, key=lambda e: (flow.key_of(e.downstream_task), e.key or "", flow.key_of(e.upstream_task))
    ):
        attrs = []
        if edge.key:
            attrs.append(f"label={_quote(edge.key)}")
        if edge.mapped:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        upstream, downstream = _quote(flow.key_of(edge.upstream_task)), _quote(flow.key_of(edge.downstream_task))
        lines.append(f"    {upstream} -> {downstream}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def visualize(
    flow: Flow,
    flow_state: State | None = None,
    filename: str | Path | None = None,
    format: str | None = None,  # noqa: A002
    horizontal: bool = False,
) -> Path:
    """See ``Flow.visualize``."""
    from flowdeck.core.flow import slugify

    fmt = (format or "dot").lower().lstrip(".")
    if fmt not in ("dot", "gv") and fmt not in IMAGE_FORMATS:
        raise ValueError(f"Unknown format {format!r}: use 'dot' or one of {', '.join(IMAGE_FORMATS)}.")
    base = Path(filename) if filename is not None else Path(tempfile.gettempdir()) / f"flowdeck-{slugify(flow.name)}"
    if base.suffix.lower() in (".dot", ".gv") or base.suffix.lower().lstrip(".") in IMAGE_FORMATS:
        base = base.with_suffix("")
    dot_path = base.with_name(base.name + ".dot")
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_path.write_text(flow_to_dot(flow, flow_state=flow_state, horizontal=horizontal), encoding="utf-8")
    if fmt in ("dot", "gv"):
        return dot_path
    binary = shutil.which("dot")
    if binary is None:
        raise RuntimeError(
            f"Rendering {fmt.upper()} needs Graphviz's `dot` program, which is not installed "
            f"(the DOT file was written to {dot_path}). Install Graphviz (e.g. `apt-get install graphviz` "
            "or `brew install graphviz`), render it yourself with `dot -T"
            f"{fmt} {dot_path} -o out.{fmt}`, or call visualize(format='dot')."
        )
    image = base.with_name(f"{base.name}.{fmt}")
    completed = subprocess.run(  # noqa: S603 — fixed program, arguments are paths we chose
        [binary, f"-T{fmt}", str(dot_path), "-o", str(image)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"Graphviz could not render {dot_path}: {completed.stderr.strip()}")
    return image


__all__ = ["flow_to_dot", "visualize", "IMAGE_FORMATS"]
