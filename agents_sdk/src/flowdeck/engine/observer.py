"""How a flow run tells the outside world what happens to it.

The FlowRunner calls a :class:`RunObserver` for every flow-run and task-run state change, in the order
they happened, always in the driver process (task runners on remote executors return their state
history and the FlowRunner forwards it). Locally nobody listens; under an agent the observer is the
reporter that batches everything to the Flowdeck server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from flowdeck.engine.state import State


@runtime_checkable
class RunObserver(Protocol):
    def flow_state(self, state: State) -> None:
        """The flow run entered ``state``."""

    def task_state(self, task_key: str, map_index: int, state: State) -> None:
        """Task ``task_key`` (``map_index`` -1 unless a mapped child) entered ``state``."""

    def cancel_requested(self) -> bool:
        """True once the run must stop: cancellation was requested, or the server told this attempt
        it is over. The FlowRunner then submits nothing new and ends the flow run Cancelled."""
