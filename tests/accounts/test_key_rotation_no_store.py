"""Rotating a key answers with the new secret, once: the answer forbids every cache to keep it."""

from __future__ import annotations

import pytest

from accounts.models import Role

pytestmark = pytest.mark.django_db


def test_the_rotated_secret_is_sent_with_no_store(world_a):
    # given
    owner = world_a.client(Role.OWNER)
    created = owner.post(world_a.url("api-keys/"), {"name": "ci"}, format="json").json()
    # when
    rotated = owner.post(world_a.url(f"api-keys/{created['id']}/rotate/"), {}, format="json")
    # then
    assert rotated.status_code == 201 and rotated.json()["secret"]
    assert rotated["Cache-Control"] == "no-store"
