"""What happens when a person signs up: their first workspace, or the one they were invited to."""

from __future__ import annotations

from accounts.authz import NotFound
from accounts.models import User
from core.errors import ServiceError

from .invitations import invitation_accept, invitation_by_token
from .workspaces import workspace_create


def user_signed_up(*, user: User, workspace_name: str, invitation_token: str, ip_address: str | None) -> bool:
    """Join the inviting workspace when the sign-up came through a valid invitation for this email
    (the link proved the address, so the caller may count it as verified: returns True); otherwise
    create a first workspace with the user as Owner."""
    if invitation_token:
        try:
            invitation = invitation_by_token(invitation_token)
            if invitation.email.lower() == user.email.lower():
                invitation_accept(token=invitation_token, user=user, ip_address=ip_address)
                return True
        except (NotFound, ServiceError):
            pass  # an unusable token falls back to a normal sign-up
    name = workspace_name.strip() or f"{user.email.split('@')[0]}'s workspace"
    workspace_create(user=user, name=name[:100], ip_address=ip_address)
    return False
