"""Changes of access invalidate the verified-key cache of their workspace (accounts/key_cache.py).

Model signals catch every save and delete, the admin's and cascades included; the few bulk
``.update()`` calls on these models (which send no signal) bump explicitly where they are made.
A row just created cannot make a cached key wrong (only verified keys are cached), so creation
bumps nothing.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from . import key_cache
from .models import ApiKey, Membership, ServiceAccount, User, Workspace


def _workspace_row_changed(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if not created:
        key_cache.bump(instance.workspace_id)


def _workspace_changed(sender: Any, instance: Workspace, created: bool = False, **kwargs: Any) -> None:
    if not created:
        key_cache.bump(instance.pk)


def _user_changed(sender: Any, instance: User, created: bool = False, update_fields: Any = None,
                  **kwargs: Any) -> None:
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return  # signing in stamps last_login: nothing about access changed
    # Deleting a user deletes their memberships first, whose own signals bump their workspaces.
    for workspace_id in Membership.objects.filter(user_id=instance.pk).values_list("workspace_id", flat=True):
        key_cache.bump(workspace_id)


def connect() -> None:
    for model in (ApiKey, Membership, ServiceAccount):
        post_save.connect(_workspace_row_changed, sender=model, dispatch_uid=f"key-cache-save-{model.__name__}")
        post_delete.connect(_workspace_row_changed, sender=model, dispatch_uid=f"key-cache-delete-{model.__name__}")
    post_save.connect(_workspace_changed, sender=Workspace, dispatch_uid="key-cache-save-Workspace")
    post_delete.connect(_workspace_changed, sender=Workspace, dispatch_uid="key-cache-delete-Workspace")
    post_save.connect(_user_changed, sender=User, dispatch_uid="key-cache-save-User")
