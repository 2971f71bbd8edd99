"""Fixtures for the authoring and local-engine tests (no server, no database)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flowdeck.engine.state import State
from flowdeck.engine.task_runner import clear_cache


class RecordingObserver:
    """A RunObserver that records every call in order; ``cancel_after`` makes ``cancel_requested``
    answer True once that many task states were seen."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.cancel_after = cancel_after
        self.cancel_checks = 0

    def flow_state(self, state: State) -> None:
        self.events.append(("flow", state))

    def task_state(self, task_key: str, map_index: int, state: State) -> None:
        self.events.append(("task", task_key, map_index, state))

    def cancel_requested(self) -> bool:
        self.cancel_checks += 1
        return self.cancel_after is not None and len(self.task_events()) >= self.cancel_after

    def task_events(self) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == "task"]

    def names(self, key: str, map_index: int = -1) -> list[str]:
        """State names reported for one task run, in order."""
        return [e[3].name for e in self.events if e[0] == "task" and e[1] == key and e[2] == map_index]

    def flow_names(self) -> list[str]:
        return [e[1].name for e in self.events if e[0] == "flow"]


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # The task cache lives for the process; each test starts without cached results.
    clear_cache()
    yield
    clear_cache()
