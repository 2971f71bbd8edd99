"""Debugging helpers (Prefect 1's ``prefect.utilities.debug``).

``with raise_on_exception(): flow.run()`` lets a task's exception propagate out of ``flow.run()``
(instead of ending the task ``Failed``), so a debugger or a test sees it where it happened.
``is_serializable(obj)`` tells whether ``obj`` survives the trip to another process, as a flow run by
an agent or a process/Dask executor needs.
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flowdeck.context import context

# Run in a fresh interpreter: only what the pickle names by module can be imported there.
_LOAD_SCRIPT = """
import pickle, sys
try:
    import cloudpickle  # noqa: F401  (registers the helpers cloudpickled objects need)
except ImportError:
    pass
with open(sys.argv[1], "rb") as stream:
    pickle.load(stream)
"""


def _dumps(obj: Any) -> bytes:
    # cloudpickle (used by the process and Dask executors) handles lambdas and locally defined
    # functions; plain pickle is the fallback when it is not installed.
    try:
        cloudpickle = importlib.import_module("cloudpickle")
    except ImportError:
        return pickle.dumps(obj)
    data: bytes = cloudpickle.dumps(obj)
    return data


def is_serializable(obj: Any, raise_on_error: bool = False) -> bool:
    """Whether ``obj`` can be pickled here and unpickled in a fresh Python process.

    With ``raise_on_error=True`` the reason is raised instead of returning False: the pickling
    error, or a ``subprocess.CalledProcessError`` whose ``output`` holds the new process's traceback.
    """
    fd, path = tempfile.mkstemp(suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(_dumps(obj))
        subprocess.run(  # noqa: S603 (our own interpreter and script)
            [sys.executable, "-c", _LOAD_SCRIPT, path],
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except Exception:
        if raise_on_error:
            raise
        return False
    finally:
        os.unlink(path)
    return True


@contextmanager
def raise_on_exception() -> Iterator[None]:
    """Inside the block, an exception raised by a task propagates out of ``flow.run()`` instead of
    ending the task ``Failed``. For local debugging and tests::

        with raise_on_exception():
            flow.run()   # raises the ZeroDivisionError of the task that divided by zero
    """
    with context(raise_on_exception=True):
        yield


__all__ = ["is_serializable", "raise_on_exception"]
