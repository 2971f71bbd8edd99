"""The web tier's sign of life, so that the reaper never reads a web outage as dead agents (D5, D6).

Agents keep their runs' leases by heartbeating through the web tier. While the web tier is down (a
restart, a deploy, a database outage) no heartbeat can land, yet the reaper, which runs in Celery,
keeps ticking: left alone it would crash every healthy run whose lease ran out meanwhile and run it
a second time. So:

- every server process stamps one platform row (:class:`~orchestration.models.WebTierBeat`) with
  the database clock every :data:`BEAT_SECONDS` (:func:`web_tier_beat`, on a daemon thread that
  :func:`start_web_tier_beat` starts with the ASGI application);
- the reaper reaps only while that stamp is fresh (:func:`web_tier_is_up`): no run is reaped while
  the web tier is away;
- the beat that ends a gap (a stamp older than :data:`GAP_SECONDS`) moves every held run's lease
  on by the gap's length, in the same transaction: a lease's clock stops while agents cannot reach
  the server, and after the outage they have the time they had left before it to heartbeat again.

:data:`GAP_SECONDS` stays below two thirds of the shortest lease (agents heartbeat every third of
their lease, so a healthy run's lease has at least that long to run when an outage begins): the
reaper stops before any healthy lease can end. A beat that is merely late (a busy process) only
pauses the reaper for a moment and lengthens leases by a few seconds. With several web processes
any one of them keeps the stamp fresh. Where no web process ever beat (a deployment before this
row existed, tests that call the reaper alone) the reaper reaps as it always did.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from core.tenancy import rls_bypass
from orchestration.models import FlowRun, WebTierBeat
from orchestration.services.heartbeats import LEASED_STATES, MIN_LEASE_SECONDS

logger = logging.getLogger(__name__)

BEAT_SECONDS = 1.0
GAP_SECONDS = 4.0
assert GAP_SECONDS + BEAT_SECONDS < MIN_LEASE_SECONDS * 2 / 3, "the reaper must pause before a healthy lease ends"

_ROW = 1
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def _clock() -> datetime:
    """The database's clock at this statement (not the transaction's start: the beat may have
    waited for another process's beat)."""
    if not settings.IS_POSTGRES:
        from django.utils import timezone

        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


@transaction.atomic
def web_tier_beat() -> float:
    """Stamp the web tier as serving now. When the previous stamp is older than
    :data:`GAP_SECONDS`, the web tier is coming back from a gap: every held run's lease moves on by
    the gap. Returns the gap's length in seconds (0.0 without one)."""
    row = WebTierBeat.objects.select_for_update().filter(pk=_ROW).first()
    now = _clock()
    if row is None:
        try:
            with transaction.atomic():
                WebTierBeat.objects.create(pk=_ROW, up_since=now, last_seen_at=now)
        except IntegrityError:
            pass  # another process's first beat won: it stands for this one too
        return 0.0
    gap = now - row.last_seen_at
    if gap <= timedelta(0):
        return 0.0  # a concurrent beat stamped a later time while this one waited for the row
    fields: dict[str, Any] = {"last_seen_at": now}
    if gap > timedelta(seconds=GAP_SECONDS):
        with rls_bypass():
            moved = (
                FlowRun.objects.unscoped()
                .filter(state_type__in=LEASED_STATES, lease_expires_at__isnull=False)
                .update(lease_expires_at=F("lease_expires_at") + gap)
            )
        logger.warning("The web tier is back after %.1f s; moved %d lease(s) on by as much", gap.total_seconds(), moved)
        fields.update(up_since=now, last_gap_seconds=gap.total_seconds(), last_gap_ended_at=now)
    WebTierBeat.objects.filter(pk=_ROW).update(**fields)
    return gap.total_seconds() if "up_since" in fields else 0.0


def web_tier_is_up(now: datetime) -> bool:
    """Whether the web tier has beaten within :data:`GAP_SECONDS` of ``now`` (the database clock).
    True when no web process ever beat (nothing is known, so nothing holds the reaper back)."""
    last_seen = WebTierBeat.objects.filter(pk=_ROW).values_list("last_seen_at", flat=True).first()
    return last_seen is None or now - last_seen <= timedelta(seconds=GAP_SECONDS)


def _beat_forever(stop: threading.Event) -> None:
    from django.db import close_old_connections

    failing = False
    while not stop.is_set():
        try:
            close_old_connections()
            web_tier_beat()
        except Exception:  # the database may be away; the next beat tries again
            if not failing:
                logger.warning("The web tier's beat could not be written; retrying every %.0f s", BEAT_SECONDS,
                               exc_info=True)
            failing = True
        else:
            failing = False
        stop.wait(BEAT_SECONDS)


def start_web_tier_beat() -> threading.Thread | None:
    """Start this server process's beat thread (once per process; a daemon). Off when
    ``settings.FLOWDECK_WEB_TIER_BEAT`` is false."""
    global _thread
    if not settings.FLOWDECK_WEB_TIER_BEAT:
        return None
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_beat_forever, args=(threading.Event(),), name="flowdeck-web-tier-beat",
                                       daemon=True)
            _thread.start()
        return _thread
