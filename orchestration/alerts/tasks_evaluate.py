"""Celery tasks of the evaluator: the state-change trigger's work, and the platform tick (the
service itself, registered under the name :func:`orchestration.periodic.task_name` gives it, as
beat schedules it; it takes no arguments and is safe to run twice at once)."""

from __future__ import annotations

from celery import shared_task

from orchestration.periodic import task_name

from .evaluator import evaluate_flow_run, evaluate_sla_policies

evaluate_sla_policies_task = shared_task(name=task_name("evaluate_sla_policies"), ignore_result=True)(
    evaluate_sla_policies)


@shared_task(name="orchestration.alerts.tasks_evaluate.evaluate_flow_run_task", ignore_result=True)
def evaluate_flow_run_task(flow_run_id: str) -> int:
    """Evaluate the policies covering a run's flow after the run started or ended."""
    return evaluate_flow_run(flow_run_id)
