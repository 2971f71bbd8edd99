"""Batches waiting on disk while the server cannot be reached.

One JSON file per batch, named by a growing counter so the directory order is the sending order;
each file keeps the batch's idempotency key, so the batch is sent again with the same key and the
server applies it once whatever happened to earlier attempts. Files are written atomically
(temporary file + rename): a crash leaves whole batches or none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import deque
from pathlib import Path

from flowdeck.reporting.batches import Batch

SUFFIX = ".json"


class Spool:
    """An on-disk FIFO of batches in ``directory`` (created 0700; it may hold log text)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        names = sorted(p.name for p in directory.iterdir() if p.suffix == SUFFIX and p.stem.isdigit())
        self._names: deque[str] = deque(names)
        self._next = int(names[-1][: -len(SUFFIX)]) + 1 if names else 1
        self._head: Batch | None = None

    def __len__(self) -> int:
        return len(self._names)

    def __bool__(self) -> bool:
        return bool(self._names)

    def _write(self, name: str, batch: Batch) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".batch-", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(batch.to_json(), handle, separators=(",", ":"))
            os.replace(tmp, self.directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def append(self, batch: Batch) -> None:
        name = f"{self._next:012d}{SUFFIX}"
        self._write(name, batch)
        self._next += 1
        self._names.append(name)

    def peek(self) -> Batch | None:
        """The oldest batch (read from disk once, then kept in memory until popped)."""
        if not self._names:
            return None
        if self._head is None:
            data = json.loads((self.directory / self._names[0]).read_text(encoding="utf-8"))
            self._head = Batch.from_json(data)
        return self._head

    def rewrite_head(self, batch: Batch) -> None:
        """Replace the oldest batch (e.g. a new idempotency key for a re-proposal)."""
        if self._names:
            self._write(self._names[0], batch)
            self._head = batch

    def pop(self) -> None:
        """Forget the oldest batch: it was delivered."""
        if self._names:
            (self.directory / self._names.popleft()).unlink(missing_ok=True)
            self._head = None

    def batches(self) -> list[Batch]:
        """Every spooled batch, oldest first (reads each file)."""
        return [Batch.from_json(json.loads((self.directory / n).read_text(encoding="utf-8"))) for n in self._names]

    def clear(self) -> None:
        """Drop every batch and the directory itself."""
        self._names.clear()
        self._head = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def remove_if_empty(self) -> None:
        if not self._names:
            try:
                self.directory.rmdir()
            except OSError:
                pass
