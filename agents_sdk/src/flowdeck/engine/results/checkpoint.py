"""``CheckpointResult``: where a task's result goes when neither the task nor its flow names a
``Result`` and checkpointing is on (the default in flow runs an agent starts).

Each result is a pickle file under the results directory (``FLOWDECK_RESULTS_DIR``, default
``$FLOWDECK_HOME/results``), one sub-directory per flow run. The reference the server keeps is the
path *relative* to that directory, so a retry reads it from its own machine's results directory:
found when the directory is shared storage (mounted anywhere), missing on another machine — and then
the retry runs the task again. A value that cannot be pickled, or a directory that cannot be
written, is logged and leaves the task without a checkpoint; the task itself still succeeds.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from flowdeck.engine.results.base import Result
from flowdeck.engine.results.local_result import _UNSAFE, LocalResult
from flowdeck.engine.serializers import Serializer

logger = logging.getLogger("flowdeck.results")


def is_checkpoint_ref(ref: str) -> bool:
    """Whether ``ref`` can be a ``CheckpointResult`` reference: relative, inside the results directory
    (a reference comes from the server, so it must not lead anywhere else on this machine)."""
    path = PurePosixPath(ref)
    return bool(ref) and not path.is_absolute() and ".." not in path.parts and "\\" not in ref


def run_dir_name(flow_run_id: Any) -> str:
    """The sub-directory of one flow run's checkpoints."""
    return _UNSAFE.sub("-", str(flow_run_id or "local")).strip("-") or "local"


class CheckpointResult(LocalResult):
    """Pickle files under the results directory, referenced by their relative path.

    Args:
        dir: the results directory (default: ``flowdeck.config.results_dir()``); created on the
            first write, not before: a directory that cannot be used must not stop a run.
        serializer: how values become bytes (default pickle, cloudpickle when installed).
    """

    def __init__(
        self,
        dir: str | os.PathLike[str] | None = None,  # noqa: A002 — LocalResult's spelling
        location: str | None = None,
        serializer: Serializer | None = None,
        value: Any = None,
    ) -> None:
        if dir is None:
            from flowdeck.config import results_dir

            dir = results_dir()
        super().__init__(dir=dir, validate_dir=False, location=location, serializer=serializer, value=value)

    def _default_location(self, **kwargs: Any) -> str:
        key = _UNSAFE.sub("-", str(kwargs.get("task_key") or kwargs.get("task_name") or "task")).strip("-") or "task"
        map_index = kwargs.get("map_index")
        if isinstance(map_index, int) and map_index >= 0:
            key += f"-{map_index}"
        return f"{run_dir_name(kwargs.get('flow_run_id'))}/{key}-{uuid.uuid4().hex}.pickle"

    def read(self, location: str) -> Result:
        new = super().read(location)
        new.location = location
        return new

    def write(self, value: Any, **kwargs: Any) -> Result:
        new = self.format(**kwargs) if self.location else self.copy()
        if not new.location:
            new.location = self._default_location(**kwargs)
        relative = new.location
        try:
            data = self.serializer.serialize(value)
        except Exception as exc:
            logger.warning(
                "The result of task %r cannot be pickled (%s: %s), so it is not checkpointed: a retry of this "
                "flow run will run the task again.", kwargs.get("task_full_name") or kwargs.get("task_name"),
                type(exc).__name__, exc,
            )
            new.location = None
            new.value = value
            return new
        path = self._path(relative)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a retry never reads half a file.
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning(
                "The result of task %r cannot be checkpointed in %s (%s): a retry of this flow run will run the "
                "task again.", kwargs.get("task_full_name") or kwargs.get("task_name"), self.dir, exc,
            )
            new.location = None
        else:
            # Relative: another machine resolves it against its own results directory.
            new.location = relative if not Path(relative).is_absolute() else str(path)
        new.value = value
        return new

    def run_dir(self, flow_run_id: Any) -> Path:
        """The directory holding one flow run's checkpoints."""
        return self.dir / run_dir_name(flow_run_id)


__all__ = ["CheckpointResult", "is_checkpoint_ref", "run_dir_name"]
