"""``JinjaTemplate``: render a Jinja2 template with the context and the task's inputs.

Jinja2 is optional (``pip install 'flowdeck[templates]'``) and imported when a template is
rendered, so a flow using the task can be defined and registered without it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from flowdeck.context import context
from flowdeck.core.task import Task

INSTALL_HINT = "JinjaTemplate needs Jinja2, which is not installed: pip install 'flowdeck[templates]'"


def _jinja() -> Any:
    try:
        # Imported by name: this module is itself called ``jinja2``.
        return importlib.import_module("jinja2")
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


class JinjaTemplate(Task):
    """Renders a Jinja2 template: names come from ``flowdeck.context`` and from the keyword
    arguments the task is called with (upstream results included), which win.

    Args:
        template: the default template text; ``template=`` given when the task is called wins.
        template_file: a file holding the template, read when the task runs (Flowdeck's addition:
            Prefect 1 takes text only); used when no template text is given. Templates it
            ``{% include %}``s are looked up in its directory.
        **kwargs: ``Task`` arguments.
    """

    def __init__(
        self, template: str | None = None, template_file: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> None:
        self.template = template
        self.template_file = os.fspath(template_file) if template_file is not None else None
        super().__init__(**kwargs)

    def run(self, template: str | None = None, **format_kwargs: Any) -> str:
        jinja2 = _jinja()
        template = template if template is not None else self.template
        if template is None and self.template_file is None:
            raise ValueError("JinjaTemplate needs a template or a template_file.")
        with context(**format_kwargs) as data:
            values = data.to_dict()
        if template is not None:
            compiled = jinja2.Template(template)
        else:
            assert self.template_file is not None
            path = Path(self.template_file).expanduser().resolve()
            loader = jinja2.FileSystemLoader(str(path.parent))
            environment = jinja2.Environment(loader=loader, keep_trailing_newline=True)
            compiled = environment.get_template(path.name)
        return str(compiled.render(**values))


__all__ = ["JinjaTemplate", "INSTALL_HINT"]
