"""The orchestration part of the GraphQL schema: one root field per workspace and the UI's actions
on runs.

    orchestration(workspace: "acme") {
      dashboard { countsByState { stateType count } runsByStateOverTime(hours: 24) { bucket stateType count }
                  lateRuns(first: 10) { … } failingRuns { … } upcomingRuns { … } agents { name status } }
      projects { id name flows { id name } }
      flow(id: …) { activeVersion { tasks edges parameters } versions { … } schedules { … } recentRuns { … } }
      flowRuns(filter: {flowId, stateTypes, stateName, labels, scheduledBefore, scheduledAfter, createdBy},
               first: 25, after: …) { edges { node { … } } pageInfo { … } }
      flowRun(id: …) { stateHistory { … } taskRuns { … stateHistory { … } } taskRun(id: …) { … }
                       logs(first: 200, afterSequence: …, levelGte: …, taskRunId: …, search: …) { … } }
      agents { name status lastHeartbeatAt }
    }

``orchestration`` is null for a slug the viewer is not a member of (like ``workspace(slug)``).
"""

from __future__ import annotations

from typing import Any

import graphene

from accounts.authz import Principal
from accounts.graphql.context import get_context

from . import mutations as m
from .alert_mutations import AlertMutations
from .channels import ChannelMutations
from .dataloaders import loaders
from .types import OrchestrationType


class OrchestrationQuery(graphene.ObjectType):
    orchestration = graphene.Field(
        OrchestrationType,
        workspace=graphene.String(required=True, description="The workspace's slug."),
        description="Flows, runs and agents of a workspace you are a member of; null for any other slug.",
    )

    @staticmethod
    def resolve_orchestration(root: Any, info: Any, workspace: str) -> Principal | None:
        principal = get_context(info).member_principal(workspace)
        if principal is not None:
            loaders(info).principals[principal.workspace.pk] = principal
        return principal


class OrchestrationMutation(AlertMutations, ChannelMutations, graphene.ObjectType):
    quick_run = m.QuickRun.Field()
    cancel_flow_run = m.CancelFlowRun.Field()
    restart_flow_run = m.RestartFlowRun.Field()
    mark_flow_run = m.MarkFlowRun.Field()
    delete_flow_run = m.DeleteFlowRun.Field()
    pin_flow_version = m.PinFlowVersion.Field()
    unpin_flow_version = m.UnpinFlowVersion.Field()
    set_flow_version_archived = m.SetFlowVersionArchived.Field()
    set_schedule_paused = m.SetSchedulePaused.Field()
    create_project = m.CreateProject.Field()
    update_project = m.UpdateProject.Field()
