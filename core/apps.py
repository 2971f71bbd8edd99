from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core plumbing"

    def ready(self) -> None:
        from . import checks, db_checks  # noqa: F401 - register the system checks
        from .rls import on_post_migrate

        # Infrastructure, not domain logic: keep grants and RLS policies in step with the schema.
        post_migrate.connect(on_post_migrate, dispatch_uid="core.rls")

