"""Factories for schedules (tenant rows, written with the RLS bypass on like every tenant factory)."""

from __future__ import annotations

from datetime import UTC, datetime

import factory

from orchestration.models import Schedule
from tests.factories import TenantFactory
from tests.orchestration.factories import FlowFactory

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


class ScheduleFactory(TenantFactory):
    class Meta:
        model = Schedule

    flow = factory.SubFactory(FlowFactory)
    workspace = factory.SelfAttribute("flow.workspace")
    kind = Schedule.Kind.INTERVAL
    interval_seconds = 60
    anchor_date = LONG_AGO
    timezone = "UTC"
    # Created long ago, so that the tick may plan from any "now" a test picks.
    created_at = LONG_AGO
    updated_at = LONG_AGO
