"""Beat's platform ticks cannot be forgotten: every ``migrate`` installs them (a post_migrate hook)
and so does every start of Celery beat (``beat_init``), with the same idempotent code as
``manage.py setup_periodic_tasks``; ``FLOWDECK_PLATFORM_TICK_SECONDS`` (tests only) sets every
tick's interval."""

from __future__ import annotations

from io import StringIO

import pytest
from celery.signals import beat_init
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from orchestration.periodic import PLATFORM_TICKS, TICK_SECONDS_ENV, install_platform_ticks

pytestmark = pytest.mark.django_db


def _ticks() -> dict[str, tuple[str, int, bool]]:
    return {t.name: (t.task, t.interval.every, t.enabled)
            for t in PeriodicTask.objects.select_related("interval").filter(name__startswith="flowdeck: ")}


def _expected(every: int | None = None) -> dict[str, tuple[str, int, bool]]:
    return {tick.name: (tick.task, every or tick.every_seconds, True) for tick in PLATFORM_TICKS}


@pytest.fixture
def no_ticks(monkeypatch):
    monkeypatch.delenv(TICK_SECONDS_ENV, raising=False)
    PeriodicTask.objects.filter(name__startswith="flowdeck: ").delete()
    assert _ticks() == {}


def test_migrate_installs_the_platform_ticks(no_ticks):
    # when: migrate runs (nothing to apply: as on every deploy after the first)
    call_command("migrate", verbosity=0, stdout=StringIO())
    # then: every platform tick is there, enabled, with its interval
    assert _ticks() == _expected()


def test_beat_start_installs_the_platform_ticks(no_ticks):
    # when: Celery beat starts (it sends beat_init before its first tick)
    beat_init.send(sender=None)
    # then
    assert _ticks() == _expected()


def test_installing_twice_changes_nothing(no_ticks):
    install_platform_ticks()
    first = {t.name: (t.pk, t.interval_id) for t in PeriodicTask.objects.filter(name__startswith="flowdeck: ")}
    intervals = IntervalSchedule.objects.count()
    lines: list[str] = []
    install_platform_ticks(report=lines.append)
    assert {t.name: (t.pk, t.interval_id) for t in PeriodicTask.objects.filter(name__startswith="flowdeck: ")} == first
    assert IntervalSchedule.objects.count() == intervals
    assert lines == []  # nothing to create, update or disable


def test_the_test_knob_sets_every_interval_and_a_later_install_restores_them(no_ticks, monkeypatch):
    monkeypatch.setenv(TICK_SECONDS_ENV, "1")
    install_platform_ticks()
    assert _ticks() == _expected(every=1)
    monkeypatch.delenv(TICK_SECONDS_ENV)
    lines: list[str] = []
    install_platform_ticks(report=lines.append)
    assert _ticks() == _expected()
    assert len(lines) == len(PLATFORM_TICKS) and all(line.startswith("updated ") for line in lines)


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "soon"])
def test_a_bad_knob_is_refused_with_its_name(no_ticks, monkeypatch, value):
    monkeypatch.setenv(TICK_SECONDS_ENV, value)
    with pytest.raises(ValueError, match=TICK_SECONDS_ENV):
        install_platform_ticks()
    assert _ticks() == {}  # all or nothing


def test_the_command_stays_a_manual_tool_with_the_same_result(no_ticks):
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out, stderr=StringIO())
    assert _ticks() == _expected()
    assert f"{len(PLATFORM_TICKS)} platform tick(s) installed" in out.getvalue()
