"""The in-process loop that runs the periodic services in embedded mode (config/embedded.py)."""

from __future__ import annotations

import threading

import pytest
from django.utils.module_loading import import_string

from config import embedded
from config.embedded import PeriodicLoop, PeriodicService


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_registered_service_resolves_to_a_callable() -> None:
    paths = [s.path for s in embedded.SERVICES]
    assert len(paths) == len(set(paths)), "a service is registered twice"
    for service in embedded.SERVICES:
        assert callable(import_string(service.path)), service.path
        assert service.every > 0


def test_services_run_on_their_own_interval() -> None:
    calls: list[str] = []
    funcs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    clock = Clock()
    loop = PeriodicLoop(
        [PeriodicService("a", every=10), PeriodicService("b", every=30)], clock=clock, resolve=funcs.__getitem__
    )

    assert loop.run_due() == ["a", "b"]  # everything runs once at start
    clock.now += 5
    assert loop.run_due() == []
    clock.now += 5
    assert loop.run_due() == ["a"]
    clock.now += 20
    assert loop.run_due() == ["a", "b"]
    assert calls == ["a", "b", "a", "a", "b"]


def test_a_failing_service_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    funcs = {"boom": boom, "ok": lambda: calls.append("ok")}
    loop = PeriodicLoop([PeriodicService("boom"), PeriodicService("ok")], resolve=funcs.__getitem__)
    assert loop.run_due() == ["boom", "ok"]
    assert calls == ["ok"]
    assert "Periodic service boom failed" in caplog.text


def test_unknown_path_fails_at_construction() -> None:
    with pytest.raises(ImportError):
        PeriodicLoop([PeriodicService("config.embedded.no_such_service")])


def test_thread_runs_services_and_stops() -> None:
    ran = threading.Event()
    loop = PeriodicLoop([PeriodicService("x", every=60)], tick_seconds=0.01, resolve=lambda _: ran.set)
    thread = loop.start()
    try:
        assert thread.daemon
        assert ran.wait(5)
        with pytest.raises(RuntimeError):
            loop.start()
    finally:
        loop.stop()
    assert not thread.is_alive()


def test_run_all_once_ignores_the_schedule() -> None:
    calls: list[str] = []
    loop = PeriodicLoop([PeriodicService("a", every=3600)], resolve=lambda p: lambda: calls.append(p))
    loop.run_due()
    assert loop.run_all_once() == ["a"]
    assert calls == ["a", "a"]


def test_periodic_every_caps_each_interval_and_keeps_shorter_ones() -> None:
    services = (PeriodicService("a.b", every=30), PeriodicService("c.d", every=0.5))
    assert [s.every for s in embedded.with_max_interval(services, 2.0)] == [2.0, 0.5]
    assert embedded.with_max_interval(services, None) == services
