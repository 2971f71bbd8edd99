"""Property-based test (hypothesis) over random transition sequences proposed through the engine
to one flow run and two tagged task runs sharing a tag limit of 1.

Invariants after every step: a terminal run stays terminal unless restarted; state_version grows
by exactly 1 per accepted transition and equals the number of history rows; start_time, once set,
never changes; tag slots never exceed their limit, are held only by RUNNING task runs, and none is
held once the flow run is terminal.
"""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import (
    CorePolicy,
    ProposedState,
    ReaperPolicy,
    SetStateStatus,
    TaskPolicy,
    flow_run_set_state,
    task_run_set_state,
)
from orchestration.engine.rules import TERMINAL
from orchestration.models import ConcurrencySlot, StateType, TaskRun
from tests.orchestration.factories import FlowRunFactory, TaskRunFactory

from .conftest import ConcurrencyLimitFactory, history, refresh

steps = st.lists(
    st.tuples(
        st.sampled_from(["flow", "flow-reaper", "task0", "task1"]),
        st.sampled_from(list(StateType.values)),
        st.booleans(),  # an explicit restart flag
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_random_transition_sequences_keep_the_invariants(version_a, sequence):
    tag = f"tag-{uuid.uuid4().hex}"  # the workspace outlives one example: a fresh limit each time
    limit = ConcurrencyLimitFactory(workspace=version_a.workspace, tag=tag, limit=1)
    run = FlowRunFactory(flow_version=version_a)
    tasks = [TaskRunFactory(flow_run=run, task_key="extract", map_index=i, tags=[tag]) for i in range(2)]
    ws = run.workspace_id
    for target, to, restart in sequence:
        obj = run if target.startswith("flow") else tasks[int(target[-1])]
        refresh(obj)
        before = (obj.state_type, obj.state_version, obj.start_time)
        details = {"restart": True} if restart else {}
        with workspace_scope([ws]):
            if obj is run:
                policy = ReaperPolicy() if target == "flow-reaper" else CorePolicy()
                result = flow_run_set_state(actor=None, flow_run_id=run.pk, workspace_id=ws, policy=policy,
                                            state=ProposedState(type=to, details=details))
            else:
                result = task_run_set_state(actor=None, task_run_id=obj.pk, workspace_id=ws, policy=TaskPolicy(),
                                            state=ProposedState(type=to, details=details))
        refresh(obj)
        # RUNNING proposed for a RUNNING task run is ACCEPTed with nothing recorded ("already_running").
        accepted = result.status is SetStateStatus.ACCEPT and result.details.get("code") != "already_running"
        # Terminal absorbs unless restarted.
        if before[0] in TERMINAL and accepted:
            assert restart and to in ("SCHEDULED", "PENDING")
        # One version and one history row per accepted transition.
        assert obj.state_version == before[1] + accepted
        assert len(history(obj)) == obj.state_version
        # start_time is set once.
        if before[2] is not None:
            assert obj.start_time == before[2]
        if obj.state_type == "RUNNING":
            assert obj.start_time is not None
        # Slots.
        with rls_bypass():
            holders = list(ConcurrencySlot.objects.for_workspace(ws).filter(limit=limit)
                           .values_list("task_run_id", flat=True))
            states = dict(TaskRun.objects.for_workspace(ws).filter(pk__in=holders).values_list("pk", "state_type"))
        assert len(holders) <= limit.limit
        assert all(states[h] == "RUNNING" for h in holders)
        refresh(run)
        if run.state_type in TERMINAL:
            assert holders == []
