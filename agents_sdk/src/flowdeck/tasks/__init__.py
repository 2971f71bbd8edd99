"""Ready-made tasks (Prefect 1's ``prefect.tasks``): ``core`` (function, constants, collections,
operators) and ``control_flow`` (``case``, ``merge``, ``ifelse``, ``switch``, ``FilterTask``)."""
