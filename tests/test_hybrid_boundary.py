"""A2: the server never calls a URL that an agent or user supplied — with one exception, notification
channels an Admin configured. Exactly one server module, ``orchestration/alerts/delivery.py``, may
import an HTTP client (httpx), and only the one function that runs the target check first may use
it to make a request; ``orchestration/alerts/channels.py`` may import ``socket``, for name resolution
only (the check resolves the host and refuses loopback, private, link-local… addresses), and
``config/serve.py`` may import ``socket`` to open the server's own listening socket (never to
connect anywhere). Every other server module stays without any outbound client."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_PACKAGES = ["accounts", "billing", "config", "core", "frontend", "orchestration"]
OUTBOUND = {"httpx", "requests", "urllib.request", "urllib3", "aiohttp", "http.client", "socket"}

DELIVERY = "orchestration/alerts/delivery.py"
CHANNELS = "orchestration/alerts/channels.py"
SERVE = "config/serve.py"
# The one exception (A2), and exactly what each of its modules may import; and the server's own
# listening socket.
ALLOWED = {DELIVERY: ["httpx"], CHANNELS: ["socket"], SERVE: ["socket"]}
SENDER = "_http_post"  # the only function of delivery.py that may make a request
HTTPX_OUTSIDE_SENDER = {"TimeoutException", "HTTPError"}  # exception classes, to report failures
SOCKET_USES = {"getaddrinfo", "gaierror", "SOCK_STREAM"}
LISTENING_USES = {"socket", "AF_INET", "AF_INET6", "SOCK_STREAM", "SOL_SOCKET", "SO_REUSEADDR", "SO_REUSEPORT"}


def _tree(relative: str) -> ast.Module:
    return ast.parse((ROOT / relative).read_text())


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _uses(tree: ast.AST, module: str) -> list[ast.Attribute]:
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == module]


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    (found,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    return found


def test_no_server_module_imports_an_http_client_but_notification_delivery():
    offenders = {}
    for package in SERVER_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found = {
                name for name in _imports(path)
                if name in OUTBOUND or name.split(".")[0] in {"httpx", "requests", "aiohttp"}
            }
            if found:
                offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert offenders == ALLOWED


def test_the_clients_are_imported_as_modules_so_every_use_is_visible():
    for relative, (module,) in ALLOWED.items():
        tree = _tree(relative)
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").split(".")[0] == module], f"{relative}: use 'import {module}'"
        aliases = [alias for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
                   if alias.name == module]
        assert aliases and all(alias.asname is None for alias in aliases), relative


def test_delivery_makes_requests_only_after_the_target_check_and_follows_no_redirect():
    tree = _tree(DELIVERY)
    sender = _function(tree, SENDER)
    inside = {id(node) for node in _uses(sender, "httpx")}
    outside = {node.attr for node in _uses(tree, "httpx") if id(node) not in inside}
    assert outside <= HTTPX_OUTSIDE_SENDER, f"httpx used outside {SENDER}: {outside - HTTPX_OUTSIDE_SENDER}"
    # the sender's first statement (after its docstring) is the A2 check
    body = [stmt for stmt in sender.body
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))]
    first = body[0]
    assert isinstance(first, ast.Assign) and isinstance(first.value, ast.Call)
    assert isinstance(first.value.func, ast.Name) and first.value.func.id == "check_target_url"
    # the client follows no redirect and ignores proxy settings from the environment
    (client,) = [node for node in ast.walk(sender) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute) and node.func.attr == "Client"]
    keywords = {kw.arg: kw.value for kw in client.keywords}
    for name in ("follow_redirects", "trust_env"):
        assert isinstance(keywords.get(name), ast.Constant) and keywords[name].value is False, name
    # and nothing else in the module builds a client or calls a request function of httpx
    assert not outside & {"Client", "AsyncClient", "get", "post", "put", "request", "stream"}


def test_channels_uses_socket_for_name_resolution_only():
    used = {node.attr for node in _uses(_tree(CHANNELS), "socket")}
    assert used <= SOCKET_USES, used - SOCKET_USES


def test_serve_opens_a_listening_socket_and_connects_nowhere():
    tree = _tree(SERVE)
    used = {node.attr for node in _uses(tree, "socket")}
    assert used <= LISTENING_USES, used - LISTENING_USES
    calls = {node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert not calls & {"connect", "connect_ex", "create_connection", "sendto"}
