"""An edge of the task graph: ``upstream_task`` runs before ``downstream_task``; with a ``key``, its
result is passed to the downstream task's argument of that name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowdeck.core.task import Task


class Edge:
    """A dependency between two tasks.

    ``key``: the downstream argument that receives the upstream result (None: ordering only).
    ``mapped``: the downstream task is mapped over the upstream result (one child per element).
    ``flattened``: the upstream result (a list of lists, or a mapped task's lists) is flattened first.
    """

    __slots__ = ("upstream_task", "downstream_task", "key", "mapped", "flattened", "_hash")

    def __init__(
        self,
        upstream_task: Task,
        downstream_task: Task,
        key: str | None = None,
        mapped: bool = False,
        flattened: bool = False,
    ) -> None:
        if key is not None and not (isinstance(key, str) and key.isidentifier()):
            raise ValueError(f"An edge key must be a valid argument name, not {key!r}.")
        self.upstream_task = upstream_task
        self.downstream_task = downstream_task
        self.key = key
        self.mapped = mapped
        self.flattened = flattened
        self._hash = hash((id(upstream_task), id(downstream_task), key, mapped, flattened))

    def _identity(self) -> tuple[int, int, str | None, bool, bool]:
        return (id(self.upstream_task), id(self.downstream_task), self.key, self.mapped, self.flattened)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Edge):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        arrow = f"{self.upstream_task.name} → {self.downstream_task.name}"
        extra = f" (key={self.key})" if self.key else ""
        return f"<Edge{' (mapped)' if self.mapped else ''}: {arrow}{extra}>"

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "_hash"}

    def __setstate__(self, data: dict[str, object]) -> None:
        for name, value in data.items():
            object.__setattr__(self, name, value)
        # Object ids change across processes: recompute.
        self._hash = hash(self._identity())


__all__ = ["Edge"]
