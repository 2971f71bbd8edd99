"""The engine: states, signals, the flow and task runners, results and cache validators.

Import the runners from their modules (``flowdeck.engine.flow_runner.FlowRunner``,
``flowdeck.engine.task_runner.TaskRunner``) as in Prefect 1; this package stays light to import.
"""
