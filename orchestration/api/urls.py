from django.urls import path

from . import agent_reports, alerts, channels, views
from .agent_lane import lean

ws = "workspaces/<slug:workspace_slug>/"
flow = ws + "flows/<uuid:flow_id>/"
run = ws + "flow-runs/<uuid:flow_run_id>/"

urlpatterns = [
    # The agents' hot path first: Django tries the patterns in order (one regular expression each),
    # and these are most of the traffic. No two patterns here match the same path, so the order
    # changes no match (tests/test_url_order.py). lean(): the plain agent request skips DRF's
    # dispatch (agent_lane.py).
    path(ws + "flow-runs/", lean(views.FlowRunListView), name="flow-run-list"),
    path(run + "set-state/", lean(views.FlowRunSetStateView), name="flow-run-set-state"),
    path(run + "heartbeat/", lean(views.FlowRunHeartbeatView), name="flow-run-heartbeat"),
    path(run + "task-runs/", lean(views.FlowRunTaskRunsView), name="flow-run-task-runs"),
    path(run + "logs/", lean(views.FlowRunLogsView), name="flow-run-logs"),
    path(run + "report/", lean(agent_reports.FlowRunReportView), name="flow-run-report"),
    path(ws + "agents/<uuid:agent_id>/heartbeat/", lean(views.AgentHeartbeatView), name="agent-heartbeat"),
    path(ws + "agents/<uuid:agent_id>/claim/", lean(views.AgentClaimView), name="agent-claim"),
    # The rest.
    path(ws + "projects/", views.ProjectListView.as_view(), name="project-list"),
    path(ws + "projects/<uuid:project_id>/", views.ProjectDetailView.as_view(), name="project-detail"),
    path(ws + "flows/", views.FlowListView.as_view(), name="flow-list"),
    path(ws + "flows/register/", views.FlowRegisterView.as_view(), name="flow-register"),
    path(flow, views.FlowDetailView.as_view(), name="flow-detail"),
    path(flow + "versions/", views.FlowVersionListView.as_view(), name="flow-version-list"),
    path(flow + "versions/<uuid:version_id>/archive/", views.FlowVersionArchiveView.as_view(),
         name="flow-version-archive"),
    path(flow + "versions/<uuid:version_id>/pin/", views.FlowVersionPinView.as_view(), name="flow-version-pin"),
    path(flow + "schedules/", views.ScheduleListView.as_view(), name="schedule-list"),
    path(flow + "schedules/<uuid:schedule_id>/", views.ScheduleDetailView.as_view(), name="schedule-detail"),
    path(flow + "schedules/<uuid:schedule_id>/pause/", views.SchedulePauseView.as_view(), name="schedule-pause"),
    path(ws + "flow-runs/bulk/", views.FlowRunBulkCreateView.as_view(), name="flow-run-bulk-create"),
    path(ws + "flow-runs/bulk-action/", views.FlowRunBulkActionView.as_view(), name="flow-run-bulk-action"),
    path(ws + "bulk-actions/<uuid:bulk_action_id>/", views.BulkActionDetailView.as_view(), name="bulk-action-detail"),
    path(run, views.FlowRunDetailView.as_view(), name="flow-run-detail"),
    path(run + "cancel/", views.FlowRunCancelView.as_view(), name="flow-run-cancel"),
    path(run + "restart/", views.FlowRunRestartView.as_view(), name="flow-run-restart"),
    path(run + "mark/", views.FlowRunMarkView.as_view(), name="flow-run-mark"),
    path(run + "logs/download/", views.FlowRunLogsDownloadView.as_view(), name="flow-run-logs-download"),
    path(run + "states/", views.FlowRunStatesView.as_view(), name="flow-run-states"),
    path(ws + "agents/", views.AgentListView.as_view(), name="agent-list"),
    path(ws + "agents/<uuid:agent_id>/stop/", views.AgentStopView.as_view(), name="agent-stop"),
    path(ws + "concurrency-limits/", views.ConcurrencyLimitView.as_view(), name="concurrency-limits"),
]

# SLA policies and incidents, notification channels (they keep their routes beside their views).
urlpatterns += alerts.urlpatterns + channels.urlpatterns
