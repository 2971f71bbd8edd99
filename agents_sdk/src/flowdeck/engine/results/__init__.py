"""Results: where task outputs are checkpointed (Prefect 1's ``prefect.engine.results``).

``@task(result=LocalResult(dir="results"))`` (or ``Flow(result=...)`` for every task) writes each
successful result to a file; the state's ``result_ref`` is its location, which is what the server
stores (never the data). ``target="{task_name}-{today}"`` makes a task reuse a result already at that
location instead of running.
"""

from flowdeck.engine.results.base import Result
from flowdeck.engine.results.local_result import LocalResult

__all__ = ["Result", "LocalResult"]
