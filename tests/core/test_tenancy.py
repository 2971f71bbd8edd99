"""Tenant models refuse unscoped queries; the escape hatch is named loudly."""

import pytest

from accounts.models import ApiKey, ServiceAccount
from core.tenancy import UnscopedQueryError, rls_bypass, tenant_models


def test_unscoped_manager_use_is_refused(db):
    with pytest.raises(UnscopedQueryError, match="for_workspace"):
        ServiceAccount.objects.all()
    with pytest.raises(UnscopedQueryError):
        ApiKey.objects.filter(name="x")


def test_for_workspace_returns_only_that_workspace(world_a, world_b):
    with rls_bypass():
        names = {a.workspace_id for a in ServiceAccount.objects.for_workspace(world_a.workspace)}
    assert names == {world_a.workspace.pk}


def test_every_tenant_model_uses_the_refusing_manager():
    models = tenant_models()
    assert ServiceAccount in models and ApiKey in models
    for model in models:
        assert model._default_manager.__class__.__name__ == "Manager"  # Django internals
        with pytest.raises(UnscopedQueryError):
            model.objects.all()
