"""A2: the server never calls a URL that an agent or user supplied. Today no server package makes
outbound HTTP calls at all; this test keeps it that way until notification webhooks arrive (and
those will get their own guard against loopback/link-local/private targets)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_PACKAGES = ["accounts", "billing", "config", "core", "frontend", "orchestration"]
OUTBOUND = {"httpx", "requests", "urllib.request", "urllib3", "aiohttp", "http.client", "socket"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_server_module_imports_an_http_client():
    offenders = {}
    for package in SERVER_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found = {
                name for name in _imports(path)
                if name in OUTBOUND or name.split(".")[0] in {"httpx", "requests", "aiohttp"}
            }
            if found:
                offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert offenders == {}
