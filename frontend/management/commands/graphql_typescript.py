"""``manage.py graphql_typescript``: write the web app's TypeScript types for the GraphQL schema
(see :mod:`core.graphql_typescript`) and its copy of the schema in SDL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from graphql import print_schema

from config.schema import schema
from core.graphql_typescript import typescript

WEBAPP = Path(settings.BASE_DIR) / "frontend" / "app"
TYPES_FILE = WEBAPP / "src" / "api" / "schema.generated.ts"
SCHEMA_FILE = WEBAPP / "schema.graphql"


def schema_sdl() -> str:
    return print_schema(schema.graphql_schema).strip() + "\n"


class Command(BaseCommand):
    help = "Write the web app's TypeScript types for the GraphQL schema, and its SDL copy."

    def handle(self, *args: Any, **options: Any) -> None:
        TYPES_FILE.write_text(typescript(schema.graphql_schema))
        SCHEMA_FILE.write_text(schema_sdl())
        written = " and ".join(str(path.relative_to(settings.BASE_DIR)) for path in (TYPES_FILE, SCHEMA_FILE))
        self.stdout.write(f"wrote {written}")
