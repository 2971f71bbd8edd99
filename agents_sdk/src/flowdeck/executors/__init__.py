"""Where a flow's tasks run (Prefect 1's ``prefect.executors``).

- :class:`LocalExecutor` (default): each task in turn, in the flow runner's thread.
- :class:`LocalDaskExecutor`: a local pool of threads or processes, independent tasks side by side.
- :class:`DaskExecutor`: a ``dask.distributed`` cluster, temporary or running (needs ``distributed``).

    from flowdeck.executors import LocalDaskExecutor
    flow.run(executor=LocalDaskExecutor(scheduler="processes", num_workers=4))
"""

from __future__ import annotations

from flowdeck.executors.base import Executor
from flowdeck.executors.dask import DaskExecutor
from flowdeck.executors.local import LocalExecutor
from flowdeck.executors.local_dask import LocalDaskExecutor

__all__ = ["DaskExecutor", "Executor", "LocalDaskExecutor", "LocalExecutor"]
