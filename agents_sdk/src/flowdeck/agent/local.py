"""Prefect 1's name for the process agent: ``from flowdeck.agent.local import LocalAgent``."""

from __future__ import annotations

from flowdeck.agent.process import ProcessAgent

LocalAgent = ProcessAgent

__all__ = ["LocalAgent"]
