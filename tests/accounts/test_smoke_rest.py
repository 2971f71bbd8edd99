from accounts.models import Role


def test_member_lists_own_workspace_members(world_a):
    response = world_a.client(Role.VIEWER).get(world_a.url("members/"))
    assert response.status_code == 200, response.content
    emails = {m["user"]["email"] for m in response.json()["results"]}
    assert emails == {u.email for u in world_a.users.values()}
