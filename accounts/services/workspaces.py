"""Workspaces: creating, renaming and deleting the tenants."""

from __future__ import annotations

import logging
import re
import secrets

from django.apps import apps
from django.db import IntegrityError, models, transaction
from django.utils.text import slugify

from accounts.authz import Principal, authorize
from accounts.models import Membership, Role, User, Workspace
from core.errors import Conflict, InvalidInput
from core.live.control import close_user_sockets
from core.tenancy import TenantModel, workspace_scope

from .audit import audit_record

audit_logger = logging.getLogger("flowdeck.audit")

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
RESERVED_SLUGS = {"api", "admin", "graphql", "static", "account", "accounts", "new", "settings", "invitations"}


def _validate_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A workspace needs a name.", code="name_required", details={"name": ["Required."]})
    if len(name) > 100:
        raise InvalidInput("A workspace name is at most 100 characters.", details={"name": ["Too long."]})
    return name


def _validate_slug(slug: str) -> str:
    if not SLUG_RE.match(slug) or "--" in slug:
        raise InvalidInput(
            "A workspace slug uses 1–48 lowercase letters, digits and single hyphens, "
            "and starts and ends with a letter or digit.",
            code="invalid_slug",
            details={"slug": ["Invalid slug."]},
        )
    if slug in RESERVED_SLUGS:
        raise InvalidInput(
            f"'{slug}' is reserved; choose another slug.", code="invalid_slug", details={"slug": ["Reserved."]}
        )
    return slug


def _free_slug_from(name: str) -> str:
    base = (slugify(name)[:40].strip("-") or "workspace").replace("--", "-")
    if base in RESERVED_SLUGS:
        base = f"{base}-ws"
    candidate = base
    while Workspace.objects.filter(slug=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


@transaction.atomic
def workspace_create(*, user: User, name: str, slug: str | None = None, ip_address: str | None = None) -> Workspace:
    """Create a workspace with ``user`` as its first Owner."""
    name = _validate_name(name)
    slug = _validate_slug(slug.strip().lower()) if slug else _free_slug_from(name)
    try:
        with transaction.atomic():
            workspace = Workspace.objects.create(name=name, slug=slug, created_by=user)
    except IntegrityError:
        raise Conflict(
            f"The slug '{slug}' is already taken; choose another.", code="slug_taken", details={"slug": ["Taken."]}
        ) from None
    Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    with workspace_scope([workspace.pk]):
        audit_record(
            workspace=workspace, action="workspace.created", target=workspace, actor_user=user,
            ip_address=ip_address, data={"name": name, "slug": slug},
        )
    return workspace


@transaction.atomic
def workspace_update(
    *, actor: Principal, workspace: Workspace, name: str | None = None, slug: str | None = None
) -> Workspace:
    authorize(actor, "workspace:update", workspace)
    changes: dict[str, list[str]] = {}
    if name is not None and name != workspace.name:
        changes["name"] = [workspace.name, _validate_name(name)]
        workspace.name = changes["name"][1]
    if slug is not None and slug != workspace.slug:
        changes["slug"] = [workspace.slug, _validate_slug(slug.strip().lower())]
        workspace.slug = changes["slug"][1]
    if not changes:
        return workspace
    try:
        with transaction.atomic():
            workspace.save(update_fields=[*changes.keys()])
    except IntegrityError:
        raise Conflict(
            "That slug is already taken; choose another.", code="slug_taken", details={"slug": ["Taken."]}
        ) from None
    audit_record(workspace=workspace, action="workspace.updated", target=workspace, actor=actor, data=changes)
    return workspace


def _protecting_tenant_models() -> list[type[TenantModel]]:
    return [
        model for model in apps.get_models()
        if issubclass(model, TenantModel) and any(
            field.is_relation and getattr(field.remote_field, "on_delete", None) is models.PROTECT
            for field in model._meta.concrete_fields
        )
    ]


@transaction.atomic
def workspace_delete(*, actor: Principal, workspace: Workspace, confirm_slug: str) -> None:
    """Delete a workspace and everything in it (Owners only), confirmed by typing its slug.

    Its own audit log goes with it, so the deletion is recorded in the server's audit logger
    (``flowdeck.audit``) once committed; its members' open pages are closed (C4)."""
    authorize(actor, "workspace:delete", workspace)
    if (confirm_slug or "").strip() != workspace.slug:
        raise InvalidInput(
            f"The confirmation does not match: type the workspace's slug, {workspace.slug}, to delete it.",
            code="confirmation_mismatch",
            details={"confirm_slug": [f"Type {workspace.slug} to confirm."]},
        )
    workspace_id, slug, name = workspace.pk, workspace.slug, workspace.name
    member_ids = list(Membership.objects.filter(workspace=workspace).values_list("user_id", flat=True))
    # The cascade must see every tenant row of this workspace, whatever scope the caller had.
    with workspace_scope([workspace.pk]):
        # Rows that protect what they point at (a run keeps its flow version) go first: the
        # workspace takes both with it, and the cascade alone would refuse.
        for model in _protecting_tenant_models():
            model.all_objects.filter(workspace=workspace).delete()
        workspace.delete()
    def close_pages() -> None:  # only once the deletion is certain
        for user_id in member_ids:
            close_user_sockets(user_id=user_id, workspace_id=workspace_id, reason="workspace_deleted")

    transaction.on_commit(close_pages)
    record = {
        "action": "workspace.deleted", "workspace_id": str(workspace_id), "slug": slug, "name": name,
        "actor": actor.label, "ip_address": actor.ip_address,
    }
    transaction.on_commit(lambda: audit_logger.info(
        "workspace.deleted slug=%s id=%s by %s from %s", slug, workspace_id, actor.label, actor.ip_address,
        extra={"audit": record},
    ))
