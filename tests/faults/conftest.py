"""Fixtures of the fault suite: ``stack`` (one deployment of real processes per session, see
stack.py) and ``fault_world`` (a fresh workspace in it per test, whose agents are killed when the
test ends). These tests touch neither the suite's shared PostgreSQL nor its Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.stack import Stack, World


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    started = time.monotonic()
    deployment = Stack.create()
    deployment.timings["total"] = round(time.monotonic() - started, 2)
    print(f"\nfault stack up in {deployment.timings['total']} s: {deployment.timings}")  # shown with -s
    try:
        yield deployment
    finally:
        deployment.destroy()


@pytest.fixture
def fault_world(stack: Stack, tmp_path: Path) -> Iterator[World]:
    stack.ensure_up()
    world = stack.new_world(tmp_path)
    try:
        yield world
    finally:
        world.cleanup()
