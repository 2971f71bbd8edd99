"""The live server the SDK tests talk to is the real server on the test database: data a test
commits is what the server answers with, scoped by the caller's key."""

from __future__ import annotations

import httpx


def test_live_server_serves_the_committed_world_to_its_keys(live_server_url, live_world):
    headers = {"Authorization": f"Bearer {live_world.keys['developer']}"}
    response = httpx.get(f"{live_server_url}/api/v1/workspaces/{live_world.workspace.slug}/flows/", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["results"] == []
    other = httpx.get(f"{live_server_url}/api/v1/workspaces/other/flows/", headers=headers)
    assert other.status_code in (403, 404)
