"""The admin is an operators' tool: customers, even workspace Owners and staff who are not
superusers, cannot see into it; operators see across workspaces but never a key's hash."""

from django.test import Client

from accounts.models import Role, User


def test_workspace_owner_is_sent_to_login(world_a):
    client = Client()
    client.force_login(world_a.users[Role.OWNER])
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_who_is_not_superuser_is_kept_out(world_a):
    staff = User.objects.create_user("ops@example.com", "pw-irrelevant-123", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/accounts/apikey/").status_code == 302


def test_superuser_sees_keys_of_every_workspace_without_hashes(world_a, world_b):
    root = User.objects.create_superuser("root@example.com", "pw-irrelevant-123")
    client = Client()
    client.force_login(root)
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "acme" in page and "globex" in page
    from accounts.models import ApiKey
    from core.tenancy import rls_bypass

    with rls_bypass():
        key = ApiKey.objects.for_workspace(world_a.workspace).first()
    detail = client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert key.secret_hash not in detail and key.lookup_prefix in detail
