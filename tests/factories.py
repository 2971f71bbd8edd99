"""factory_boy factories for accounts. Tenant rows are written with the RLS bypass on, as the
services that create them would be inside their own workspace scope."""

from __future__ import annotations

import factory
from django.utils import timezone

from accounts.models import ApiKey, Membership, Role, ServiceAccount, User, Workspace
from core.tenancy import rls_bypass

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        from allauth.account.models import EmailAddress

        obj.save()
        if create:
            EmailAddress.objects.create(user=obj, email=obj.email, verified=True, primary=True)


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"ws-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.DEVELOPER


class TenantFactory(factory.django.DjangoModelFactory):
    """Creates tenant rows with the RLS bypass on (tests set up more than one workspace)."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        with rls_bypass():
            return model_class.all_objects.create(*args, **kwargs)


class ServiceAccountFactory(TenantFactory):
    class Meta:
        model = ServiceAccount

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"agent-{n}")
    role = Role.AGENT


def make_key(*, workspace: Workspace, user: User | None = None, service_account: ServiceAccount | None = None,
             role: str | None = None, expires_at=None) -> tuple[ApiKey, str]:  # type: ignore[no-untyped-def]
    """A real key minted the way the service mints it; returns the row and the secret."""
    from accounts import keys

    kind = ApiKey.Kind.USER if user else ApiKey.Kind.SERVICE_ACCOUNT
    generated = keys.generate(kind)
    with rls_bypass():
        key = ApiKey.all_objects.create(
            workspace=workspace, kind=kind, user=user, service_account=service_account, name="test key",
            lookup_prefix=generated.lookup_prefix, secret_hash=generated.secret_hash, role=role,
            expires_at=expires_at, created_at=timezone.now(),
        )
    return key, generated.secret
