"""Results: where task outputs are checkpointed (Prefect 1's ``prefect.engine.results``).

``@task(result=LocalResult(dir="results"))`` (or ``Flow(result=...)`` for every task) writes each
successful result to a file; the state's ``result_ref`` is its location, which is what the server
stores (never the data). ``target="{task_name}-{today}"`` makes a task reuse a result already at that
location instead of running.

With neither, flow runs an agent starts still checkpoint every result to a ``CheckpointResult`` in
the results directory (``FLOWDECK_RESULTS_DIR``), so a retry restores what earlier attempts finished
instead of running it again (see ``flowdeck.agent.execute``).
"""

from flowdeck.engine.results.base import Result
from flowdeck.engine.results.checkpoint import CheckpointResult
from flowdeck.engine.results.local_result import LocalResult

__all__ = ["Result", "LocalResult", "CheckpointResult"]
