"""Seeds workspaces into the fault stack's database: ``python -m tests.faults.seed`` (with the
stack's server environment) reads one slug per line on stdin and, for each, builds a workspace with
a member of every role and an agent service account, each with a key, with the suite's own
factories (``tests.conftest.build_world``), then answers ``{"slug": …, "keys": {role: key}}`` (or
``{"error": …}``) as one JSON line on stdout. One process serves the whole session: Django is
set up once."""

from __future__ import annotations

import json
import sys
import traceback


def main() -> None:
    import django

    django.setup()
    from django.db import connections

    from tests.conftest import build_world

    for line in sys.stdin:
        slug = line.strip()
        if not slug:
            continue
        try:
            world = build_world(slug)
            answer = {"slug": world.workspace.slug, "keys": {str(role): key for role, key in world.keys.items()}}
        except Exception as exc:  # noqa: BLE001 - reported to the test that asked
            traceback.print_exc()
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            connections.close_all()  # the next seeding reconnects, even after a PostgreSQL restart
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
