"""Branching and re-joining (Prefect 1's ``prefect.tasks.control_flow``).

``with case(cond, True): ...`` runs a block only when ``cond``'s result equals the value; the tasks
of branches not taken end ``Skipped``, and so do their downstream tasks. ``merge(a, b)`` joins
branches: it returns the first result that was not skipped. ``switch(cond, {value: task})`` and
``ifelse(cond, true_task, false_task)`` are the older spellings.
"""

from flowdeck.tasks.control_flow.case import case
from flowdeck.tasks.control_flow.conditional import CompareValue, Merge, ifelse, merge, switch
from flowdeck.tasks.control_flow.filter import FilterTask

__all__ = ["case", "CompareValue", "FilterTask", "Merge", "ifelse", "merge", "switch"]
