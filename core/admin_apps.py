from django.contrib.admin.apps import AdminConfig


class FlowdeckAdminConfig(AdminConfig):
    """The admin, on our operators-only site."""

    default_site = "core.admin_site.FlowdeckAdminSite"
