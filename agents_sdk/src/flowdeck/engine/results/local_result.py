"""``LocalResult``: results as files in a directory."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

from flowdeck.engine.results.base import Result
from flowdeck.engine.serializers import Serializer

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def default_results_dir() -> Path:
    """``$FLOWDECK_RESULTS_DIR``, else ``$FLOWDECK_HOME/results`` (default ``~/.flowdeck/results``)."""
    from flowdeck.config import results_dir

    return results_dir()


class LocalResult(Result):
    """Stores each value as a file under ``dir``.

    Args:
        dir: the directory (created when needed; default ``FLOWDECK_RESULTS_DIR`` or
            ``~/.flowdeck/results``).
        validate_dir: create the directory now and fail early when it cannot be written.
        location: a file name template relative to ``dir`` (or absolute); default: one file per
            task run, named after the flow, the task key, the map index and a random id.
        serializer: how values become bytes (default pickle).
    """

    def __init__(
        self,
        dir: str | os.PathLike[str] | None = None,  # noqa: A002 — Prefect 1 spelling
        validate_dir: bool = True,
        location: str | None = None,
        serializer: Serializer | None = None,
        value: Any = None,
    ) -> None:
        super().__init__(value=value, location=location, serializer=serializer)
        self.dir = Path(dir).expanduser().resolve() if dir is not None else default_results_dir()
        if validate_dir:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(f"LocalResult cannot use the directory {self.dir}: {exc}") from exc
            if not os.access(self.dir, os.W_OK):
                raise ValueError(f"LocalResult cannot write to the directory {self.dir}.")

    def _path(self, location: str) -> Path:
        path = Path(location)
        return path if path.is_absolute() else self.dir / path

    def _default_location(self, **kwargs: Any) -> str:
        parts = [
            str(kwargs.get("flow_name") or "flow"),
            str(kwargs.get("task_key") or kwargs.get("task_name") or "task"),
        ]
        map_index = kwargs.get("map_index")
        name = "-".join(_UNSAFE.sub("-", p).strip("-") or "x" for p in parts)
        if isinstance(map_index, int) and map_index >= 0:
            name += f"-{map_index}"
        return f"{name}-{uuid.uuid4().hex}.result"

    def read(self, location: str) -> Result:
        path = self._path(location)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"Cannot read the result at {path}: {exc}") from exc
        new = self.copy()
        new.location = str(path)
        new.value = self.serializer.deserialize(data)
        return new

    def write(self, value: Any, **kwargs: Any) -> Result:
        new = self.format(**kwargs) if self.location else self.copy()
        if not new.location:
            new.location = self._default_location(**kwargs)
        path = self._path(new.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader (or a target check) never sees half a file.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(self.serializer.serialize(value))
        os.replace(tmp, path)
        new.location = str(path)
        new.value = value
        return new

    def exists(self, location: str, **kwargs: Any) -> bool:
        if kwargs:
            location = location.format(**kwargs)
        return self._path(location).exists()


__all__ = ["LocalResult", "default_results_dir"]
