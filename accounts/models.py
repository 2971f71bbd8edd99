"""Accounts: people, the workspaces they work in (the tenants), and how they get in.

A *workspace* is the tenant. A *membership* gives a user a role in one workspace; a *service account*
is a non-human member (agents, CI). Both authenticate with *API keys* that act only inside their
workspace. *Invitations* bring people in; the *audit log* records every change of access.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.tenancy import TenantModel


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"
    AGENT = "agent", "Agent"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        email = self.normalize_email(email).lower()
        user = self.model(email=email, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    full_name = models.CharField(max_length=150, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []  # type: ignore[misc]

    objects = UserManager()  # type: ignore[misc,assignment]

    def __str__(self) -> str:
        return self.email


class Workspace(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=48, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    # A workspace may turn log upload off (A3); kept here so every app reads one flag.
    log_upload_enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_members", "Manage members of this workspace")]

    def __str__(self) -> str:
        return self.slug


class AuthGeneration(models.Model):
    """A workspace's access generation: moved by every change that can take access away, in the
    same transaction as the change (accounts/key_cache.py). Its own table, not a column of
    Workspace, so that saving a workspace loaded earlier can never write an old value back; and
    no foreign key, so that deleting a workspace moves it instead of removing it."""

    workspace = models.UUIDField(primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.workspace}: {self.value}"


class Membership(models.Model):
    """A user's role in a workspace. Not a TenantModel: it is the table tenancy is resolved from
    (a user's workspace list reads it across workspaces), so every query names the user or the
    workspace explicitly instead."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique_user"),
            models.CheckConstraint(condition=~Q(role="agent"), name="membership_no_agent_role"),
        ]
        indexes = [models.Index(fields=["user", "workspace"])]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.workspace_id} as {self.role}"


class ServiceAccount(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    is_active = models.BooleanField(default=True)
    # Restricted: visible only to Admins and to those granted view/manage on it (guardian).
    is_restricted = models.BooleanField(default=False)

    class Meta(TenantModel.Meta):
        permissions = [("manage_serviceaccount", "Manage this service account and its keys")]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="service_account_unique_name"),
            models.CheckConstraint(condition=~Q(role="owner"), name="service_account_not_owner"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(TenantModel):
    """An API key. Only a SHA-256 of the secret and a short lookup prefix are stored (B1, B2)."""

    class Kind(models.TextChoices):
        USER = "user", "User"
        SERVICE_ACCOUNT = "service_account", "Service account"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys")
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    lookup_prefix = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=64)
    # A user key may be narrowed below its owner's role; it is never above it (checked per request).
    role = models.CharField(max_length=16, choices=Role.choices, null=True, blank=True)  # noqa: DJ001 (None = owner's role)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set when a rotation replaced this key; it stays valid until expires_at (the grace period).
    rotated_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(TenantModel.Meta):
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="user", user__isnull=False, service_account__isnull=True))
                | Q(kind="service_account", user__isnull=True, service_account__isnull=False),
                name="api_key_one_owner",
            )
        ]
        indexes = [models.Index(fields=["workspace", "created_at"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.lookup_prefix}…)"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Invitation(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    send_count = models.PositiveIntegerField(default=1)

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["workspace", "email"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invitation for {self.email}"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class AuditLogEntry(TenantModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too so the entry stays readable after the actor is deleted.
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=254, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["workspace", "-created_at"])]
        ordering = ["-created_at"]
