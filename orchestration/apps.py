from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    """Projects, flows, runs, states, schedules, agents, logs. Filled by the orchestration issue."""

    name = "orchestration"
