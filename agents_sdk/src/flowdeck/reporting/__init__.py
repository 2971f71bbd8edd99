"""Reporting a flow run to the server while it runs under an agent (``RunReporter``)."""

from __future__ import annotations

from flowdeck.reporting.log_handler import ReporterLogHandler
from flowdeck.reporting.reporter import RunReporter

__all__ = ["ReporterLogHandler", "RunReporter"]
