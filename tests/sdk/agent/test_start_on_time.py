"""A run claimed ahead of its scheduled start (the claim lookahead) starts its flow on time: the
delay comes from the server's clock (scheduled start − the claim's server time), so a host clock
that is off changes nothing (D6), and the flow-run process waits for it unless cancelled."""

from __future__ import annotations

import datetime as dt
import time

from flowdeck.agent.base import CLAIM_LOOKAHEAD_SECONDS, ClaimedRun
from flowdeck.agent.execute import _wait_for_start
from tests.sdk.agent.conftest import claim_record


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def test_the_start_is_the_servers_delay_on_this_hosts_clock():
    # given: the server's clock is an hour behind this host's; the run is due 1.5 s after the claim
    server_now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    record = claim_record(scheduled_start=_iso(server_now + dt.timedelta(seconds=1.5)),
                          lease_expires_at=_iso(server_now + dt.timedelta(seconds=60)))
    received = time.time()
    # when
    run = ClaimedRun.from_claim(record, lease_seconds=60, received_at=received)
    # then
    assert run.start_not_before is not None and abs(run.start_not_before - (received + 1.5)) < 1e-6
    assert run.launch_record(lease_seconds=60)["start_not_before"] == run.start_not_before


def test_a_run_already_due_starts_at_once_and_a_far_start_is_capped():
    server_now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    late = claim_record(scheduled_start=_iso(server_now - dt.timedelta(minutes=5)),
                        lease_expires_at=_iso(server_now + dt.timedelta(seconds=60)))
    assert ClaimedRun.from_claim(late, lease_seconds=60, received_at=time.time()).start_not_before is None
    far = claim_record(scheduled_start=_iso(server_now + dt.timedelta(hours=1)),
                       lease_expires_at=_iso(server_now + dt.timedelta(seconds=60)))
    received = time.time()
    capped = ClaimedRun.from_claim(far, lease_seconds=60, received_at=received).start_not_before
    assert capped is not None and capped - received <= CLAIM_LOOKAHEAD_SECONDS + 1.0


class _Control:
    def __init__(self, cancelled: bool = False) -> None:
        self.cancelled = cancelled

    def cancel_requested(self) -> bool:
        return self.cancelled


def test_the_flow_run_process_waits_for_the_start_unless_cancelled():
    start = time.time() + 0.3
    began = time.monotonic()
    _wait_for_start({"start_not_before": start}, _Control())  # type: ignore[arg-type]
    assert time.time() >= start and time.monotonic() - began < 1.0
    began = time.monotonic()
    _wait_for_start({"start_not_before": time.time() + 30}, _Control(cancelled=True))  # type: ignore[arg-type]
    assert time.monotonic() - began < 0.1
    _wait_for_start({}, _Control())  # type: ignore[arg-type]  # no start: at once
