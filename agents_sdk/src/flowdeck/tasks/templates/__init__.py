"""String templating tasks (Prefect 1's ``prefect.tasks.templates``): ``StringFormatter``
(``str.format``) and ``JinjaTemplate`` (Jinja2, ``pip install 'flowdeck[templates]'``).

Both render with ``flowdeck.context`` (``flow_name``, ``today``, ``parameters`` …) plus the keyword
arguments the task is called with, which win over context values of the same name.
"""

from __future__ import annotations

from flowdeck.tasks.templates.jinja2 import JinjaTemplate
from flowdeck.tasks.templates.strings import StringFormatter

__all__ = ["JinjaTemplate", "StringFormatter"]
