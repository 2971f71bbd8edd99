"""Which version a new run uses: the pinned one, else the newest unarchived one, else none."""

from __future__ import annotations

import pytest

from core.tenancy import rls_bypass
from orchestration.models import Flow
from orchestration.selectors import (
    flow_version_for_new_run,
    flow_versions,
    flow_versions_for_new_runs,
    keyed_run_and_version_for_new_run,
)
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(world_a):  # type: ignore[no-untyped-def]
    """Versions 1, 2 and 3 of one flow."""
    project = ProjectFactory(workspace=world_a.workspace)
    v1 = FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, version=1)
    v2 = FlowVersionFactory(flow=v1.flow, version=2)
    v3 = FlowVersionFactory(flow=v1.flow, version=3)
    return v1, v2, v3


def _set(obj, **fields) -> None:  # type: ignore[no-untyped-def]
    with rls_bypass():
        type(obj).objects.unscoped().filter(pk=obj.pk).update(**fields)


def _flow(flow: Flow) -> Flow:
    with rls_bypass():
        return Flow.objects.unscoped().get(pk=flow.pk)


def _pick(flow: Flow):  # type: ignore[no-untyped-def]
    with rls_bypass():
        chosen = flow_version_for_new_run(_flow(flow))
        # A create with an idempotency key reads the version with the keyed run: the same answer.
        assert keyed_run_and_version_for_new_run(_flow(flow), "no-run-has-this-key") == (None, chosen)
    return chosen


def test_the_newest_unarchived_version_by_default(versions):
    v1, _v2, v3 = versions
    assert _pick(v1.flow) == v3
    _set(v3, is_archived=True)
    assert _pick(v1.flow).version == 2


def test_a_pinned_version_wins_even_over_newer_ones(versions):
    v1, _v2, _v3 = versions
    _set(v1.flow, pinned_version=v1)
    assert _pick(v1.flow) == v1


def test_none_when_every_version_is_archived(versions):
    for version in versions:
        _set(version, is_archived=True)
    assert _pick(versions[0].flow) is None


def test_versions_are_listed_newest_first(versions):
    with rls_bypass():
        assert [v.version for v in flow_versions(_flow(versions[0].flow))] == [3, 2, 1]


def test_the_many_flows_form_answers_as_the_single_one_in_one_query(versions, django_assert_num_queries):
    # given three flows: one pinned to an old version, one with its newest version archived, one
    # with every version archived
    v1, _v2, v3 = versions
    _set(v1.flow, pinned_version=v1)
    newest_archived = FlowVersionFactory(version=1)
    FlowVersionFactory(flow=newest_archived.flow, version=2, is_archived=True)
    all_archived = FlowVersionFactory(version=1, is_archived=True)
    flows = [_flow(v.flow) for v in (v1, newest_archived, all_archived)]
    # when the versions of all three are asked for at once
    with rls_bypass(), django_assert_num_queries(1):
        chosen = flow_versions_for_new_runs(flows, only=("parameters",))
    # then each flow gets what the single form answers, and a flow with none is left out
    assert chosen == {flow.pk: _pick(flow) for flow in flows if _pick(flow) is not None}
    assert chosen == {v1.flow_id: v1, newest_archived.flow_id: newest_archived}
    assert v3 not in chosen.values()


def test_a_create_key_finds_the_run_made_with_it_in_the_flows_workspace_only(versions, world_b):
    v1, _v2, v3 = versions
    with rls_bypass():
        made = FlowRunFactory(flow_version=v1, idempotency_key="nightly-2026-12-05")
        # the same key in another workspace is another run
        FlowRunFactory(flow_version=FlowVersionFactory(flow__project=ProjectFactory(workspace=world_b.workspace),
                                                       flow__workspace=world_b.workspace),
                       idempotency_key="nightly-2026-12-05")
        found, version = keyed_run_and_version_for_new_run(_flow(v1.flow), "nightly-2026-12-05")
        assert (found.pk, found.idempotency_key, found.flow_version_id) == (made.pk, made.idempotency_key, v1.pk)
        assert version == v3
        for version_ in versions:
            _set(version_, is_archived=True)
        # no version to run any more: the keyed run is still found (a replay answers with it)
        found, version = keyed_run_and_version_for_new_run(_flow(v1.flow), "nightly-2026-12-05")
        assert (found.pk, version) == (made.pk, None)
