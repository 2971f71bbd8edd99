"""REST input and output shapes for accounts."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import ApiKey, AuditLogEntry, Invitation, Membership, Role, ServiceAccount, User, Workspace
from core.serializers import StrictInputSerializer

HUMAN_ROLE_CHOICES = [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER]


class UserOut(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "full_name"]


class WorkspaceOut(serializers.ModelSerializer):
    class Meta:
        model = Workspace
        fields = ["id", "name", "slug", "created_at"]


class WorkspaceCreateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.CharField(max_length=48, required=False, allow_blank=False)


class WorkspaceUpdateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    slug = serializers.CharField(max_length=48, required=False)


class WorkspaceDeleteIn(StrictInputSerializer):
    confirm_slug = serializers.CharField(max_length=48)


class MembershipOut(serializers.ModelSerializer):
    user = UserOut()

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at"]


class RoleIn(StrictInputSerializer):
    role = serializers.ChoiceField(choices=HUMAN_ROLE_CHOICES)


class InvitationOut(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", default=None)
    status = serializers.CharField()

    class Meta:
        model = Invitation
        fields = [
            "id", "email", "role", "status", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at",
            "send_count",
        ]


class InvitationCreateIn(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=HUMAN_ROLE_CHOICES)


class InvitationPreviewOut(serializers.Serializer):
    workspace_name = serializers.CharField(source="workspace.name")
    workspace_slug = serializers.CharField(source="workspace.slug")
    email = serializers.EmailField()
    role = serializers.CharField()
    invited_by = serializers.EmailField(source="invited_by.email", default=None)
    status = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ServiceAccountOut(serializers.ModelSerializer):
    class Meta:
        model = ServiceAccount
        fields = ["id", "name", "description", "role", "is_restricted", "created_at"]


class ServiceAccountCreateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=[Role.ADMIN, Role.DEVELOPER, Role.VIEWER, Role.AGENT])
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    is_restricted = serializers.BooleanField(required=False, default=False)


class ServiceAccountUpdateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    role = serializers.ChoiceField(choices=[Role.ADMIN, Role.DEVELOPER, Role.VIEWER, Role.AGENT], required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ObjectPermissionIn(StrictInputSerializer):
    user_id = serializers.UUIDField()
    level = serializers.ChoiceField(choices=["view", "manage"])


class ObjectGrantOut(serializers.Serializer):
    user_id = serializers.UUIDField()
    email = serializers.EmailField()
    permissions = serializers.ListField(child=serializers.CharField())


class ApiKeyOut(serializers.ModelSerializer):
    owner = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "kind", "owner", "lookup_prefix", "role", "created_at", "expires_at", "last_used_at",
            "revoked_at",
        ]

    def get_owner(self, key: ApiKey) -> str:
        return key.user.email if key.user else key.service_account.name  # type: ignore[union-attr]


class ApiKeyCreatedOut(ApiKeyOut):
    secret = serializers.SerializerMethodField(help_text="The key itself. Shown in this response only.")

    class Meta(ApiKeyOut.Meta):
        fields = [*ApiKeyOut.Meta.fields, "secret"]

    def get_secret(self, key: ApiKey) -> str:
        return self.context["secret"]


class ApiKeyCreateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    role = serializers.ChoiceField(choices=HUMAN_ROLE_CHOICES, required=False, allow_null=True, default=None)


class ServiceAccountKeyCreateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class ApiKeyRotateIn(StrictInputSerializer):
    grace_seconds = serializers.IntegerField(min_value=0, max_value=7 * 24 * 3600, required=False, default=0)


class AuditLogEntryOut(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = AuditLogEntry
        fields = [
            "id", "created_at", "actor", "action", "target_type", "target_id", "target_label", "data", "ip_address",
        ]


class MeOut(serializers.Serializer):
    user = UserOut(allow_null=True)
    workspaces = WorkspaceOut(many=True)


class PersonalKeysInWorkspaceOut(serializers.Serializer):
    slug = serializers.CharField(source="workspace.slug")
    name = serializers.CharField(source="workspace.name")
    personal_api_keys = serializers.IntegerField(source="active_api_keys", help_text="Personal keys that still work.")


class SignOutEverywherePreviewOut(serializers.Serializer):
    personal_api_keys = serializers.IntegerField(help_text="Your personal keys that still work, in all workspaces.")
    workspaces = PersonalKeysInWorkspaceOut(many=True, help_text="Where they are (workspaces without any left out).")


class SignOutEverywhereIn(StrictInputSerializer):
    # Never trimmed: a password may begin or end with a space. The cap keeps hashing cheap.
    password = serializers.CharField(max_length=4096, trim_whitespace=False, help_text="Your current password.")


class KeysRevokedInWorkspaceOut(serializers.Serializer):
    slug = serializers.CharField(source="workspace.slug")
    name = serializers.CharField(source="workspace.name")
    revoked_api_keys = serializers.IntegerField()


class SignedOutEverywhereOut(serializers.Serializer):
    sessions_ended = serializers.IntegerField(
        help_text="Sessions opened by logging in that were ended, this one included; any other session of yours "
                  "stops working on its next request too.")
    revoked_api_keys = serializers.IntegerField(help_text="Personal API keys revoked, in all workspaces.")
    workspaces = KeysRevokedInWorkspaceOut(many=True, help_text="Each of your workspaces and the keys revoked there.")
