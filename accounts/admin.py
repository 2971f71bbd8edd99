"""Operator views of accounts data (see core.admin_site: superusers only). Secrets never show:
keys and invitations expose no hash, and nothing about them is editable here."""

from django.contrib import admin

from .models import ApiKey, AuditLogEntry, Invitation, Membership, ServiceAccount, User, Workspace


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["email", "full_name", "is_active", "date_joined"]
    search_fields = ["email", "full_name"]
    exclude = ["password", "user_permissions", "groups"]
    readonly_fields = ["last_login", "date_joined"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ServiceAccount)
class ServiceAccountAdmin(ReadOnlyAdmin):
    list_display = ["name", "workspace", "role", "is_active"]
    list_filter = ["role", "is_active"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "workspace", "kind", "lookup_prefix", "expires_at", "last_used_at", "revoked_at"]
    exclude = ["secret_hash"]


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = ["email", "workspace", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    exclude = ["token_hash"]


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "workspace", "actor_label", "action", "target_label", "ip_address"]
    list_filter = ["action"]

    def has_delete_permission(self, request, obj=None):
        return False
