"""Ready-made tasks (Prefect 1's ``prefect.tasks``): ``core`` (function, constants, collections,
operators), ``control_flow`` (``case``, ``merge``, ``ifelse``, ``switch``, ``FilterTask``) and
``flowdeck`` (a flow of flows: ``create_flow_run``, ``wait_for_flow_run``, ``get_task_run_result``,
``StartFlowRun``; Prefect 1's ``prefect.tasks.prefect``)."""
