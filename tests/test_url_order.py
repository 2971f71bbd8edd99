"""config/urls.py lists the agents' endpoints before the accounts' ones, for speed: that is only
safe while no two of the ``api/v1/`` includes share a pattern (the first would shadow the other)."""

from __future__ import annotations

from django.urls import get_resolver


def test_the_api_includes_share_no_pattern():
    includes = [p for p in get_resolver().url_patterns if str(p.pattern) == "api/v1/"]
    assert [p.namespace for p in includes][0] == "orchestration"
    routes = [str(q.pattern) for p in includes for q in p.url_patterns]
    assert len(includes) >= 3 and len(routes) == len(set(routes))
