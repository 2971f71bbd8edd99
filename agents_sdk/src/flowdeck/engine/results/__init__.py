"""Results: where task outputs are checkpointed (Prefect 1's ``prefect.engine.results``).

``@task(result=LocalResult(dir="results"))`` (or ``Flow(result=...)`` for every task) writes each
successful result to a file; the state's ``result_ref`` is its location, which is what the server
stores (never the data). ``target="{task_name}-{today}"`` makes a task reuse a result already at that
location instead of running.

With neither, flow runs an agent starts still checkpoint every result to a ``CheckpointResult`` in
the results directory (``FLOWDECK_RESULTS_DIR``), so a retry restores what earlier attempts finished
instead of running it again (see ``flowdeck.agent.execute``).

``PrefectResult`` keeps a small JSON value in the state itself (the location is the JSON);
``S3Result`` writes objects to a bucket (boto3, ``pip install 'flowdeck[aws]'``).
"""

from flowdeck.engine.results.base import Result
from flowdeck.engine.results.checkpoint import CheckpointResult
from flowdeck.engine.results.local_result import LocalResult
from flowdeck.engine.results.prefect_result import PrefectResult
from flowdeck.engine.results.s3_result import S3Result

__all__ = ["Result", "LocalResult", "CheckpointResult", "PrefectResult", "S3Result"]
