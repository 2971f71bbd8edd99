"""The order of the API's URL patterns is for speed only. config/urls.py lists the agents'
endpoints before the accounts' ones, and orchestration/api/urls.py lists the agents' hot path
first within them: Django tries the patterns in order, one regular expression each. That is only
safe while no path of one pattern is matched by another (the first would shadow the other)."""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver, get_resolver

SAMPLES = {"slug": "acme-2", "uuid": "0b6f1c52-3f4e-4d7a-9a43-2f1f0c1d2e3f", "int": "7", "str": "tok_123"}
HOT = ["flow-run-list", "flow-run-set-state", "flow-run-heartbeat", "flow-run-task-runs", "flow-run-logs",
       "flow-run-report", "agent-heartbeat", "agent-claim"]


def _includes() -> list[URLResolver]:
    return [p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and str(p.pattern) == "api/v1/"]


def _api_patterns() -> list[URLPattern]:
    """The patterns under /api/v1/, in the order Django tries them."""
    return [p for include in _includes() for p in include.url_patterns if isinstance(p, URLPattern)]


def _sample_path(pattern: URLPattern) -> str:
    """A path the pattern matches: each ``<converter:name>`` filled with a sample value."""
    return re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLES[m.group(1) or "str"], str(pattern.pattern))


def test_the_api_includes_share_no_pattern():
    includes = _includes()
    assert [p.namespace for p in includes][0] == "orchestration"
    routes = [str(q.pattern) for p in includes for q in p.url_patterns]
    assert len(includes) >= 3 and len(routes) == len(set(routes))


def test_the_agents_endpoints_are_tried_first():
    assert [p.name for p in _api_patterns()][: len(HOT)] == HOT


def test_no_path_of_one_api_pattern_is_matched_by_another():
    patterns = _api_patterns()
    assert len(patterns) > 60  # orchestration's, accounts' and billing's
    for pattern in patterns:
        path = _sample_path(pattern)
        assert pattern.pattern.match(path), (pattern.name, path)
        others = [other.name for other in patterns if other is not pattern and other.pattern.match(path)]
        assert not others, f"{path} ({pattern.name}) is also matched by {others}: their order would matter"
