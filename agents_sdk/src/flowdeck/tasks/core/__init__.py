"""Core tasks used by the functional API."""

from flowdeck.tasks.core.collections import Dict, List, Set, Tuple
from flowdeck.tasks.core.constants import Constant
from flowdeck.tasks.core.function import FunctionTask
from flowdeck.tasks.core.operators import GetItem

__all__ = ["Constant", "Dict", "FunctionTask", "GetItem", "List", "Set", "Tuple"]
