"""Prefect 1's ``prefect.engine.result``: the ``Result`` interface and ``NoResult``.

The implementations (``LocalResult``, ``PrefectResult``, ``S3Result`` …) live in
``flowdeck.engine.results``, as in Prefect 1.
"""

from __future__ import annotations

from flowdeck.engine.results.base import NoResult, NoResultType, Result

__all__ = ["Result", "NoResult", "NoResultType"]
