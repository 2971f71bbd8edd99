"""Client addresses through the real proxy chain: the shipped nginx (infra/nginx/flowdeck.conf, only
its ports changed) in front of a real Flowdeck server process. The server believes X-Forwarded-For
only from FLOWDECK_TRUSTED_PROXIES (config/serve.py) and takes the right-most address there that is
not a trusted proxy, so a client cannot choose the address that rate limits count and the audit log
records by sending a made-up X-Forwarded-For.

Every client connects from an address of its own in 127.0.0.0/8 (all of it is this machine), drawn
at random so that rate-limit windows left by an earlier run never count."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from accounts.models import Role
from config.serve import trusted_proxies
from tests.conftest import WorkspaceWorld, build_world
from tests.sdk.conftest import ROOT, LiveServer, free_port

SHIPPED_CONF = ROOT / "infra" / "nginx" / "flowdeck.conf"
# The shipped nginx reaches the server from 127.0.0.1; an operator's load balancer in front of it
# leaves from 127.0.0.3 (trusted) or, misconfigured, from 127.0.0.4 (not trusted).
NGINX_ADDRESS, TRUSTED_BALANCER, UNTRUSTED_BALANCER = "127.0.0.1", "127.0.0.3", "127.0.0.4"
KEY_FAILURE_LIMIT = 3
# pytest-django runs transactional tests as one group: the tests that need no data are marked so
# too, so that the chain starts once, not once per group.
same_chain_group = pytest.mark.django_db(transaction=True)


def client_address() -> str:
    return f"127.{random.randint(100, 250)}.{random.randint(1, 250)}.{random.randint(1, 250)}"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail("nginx is not installed (scripts/test installs Debian's nginx-light).")
    return found


def render_shipped(*, listen_port: int, upstream_port: int) -> str:
    """infra/nginx/flowdeck.conf with the compose addresses swapped for this machine's ports."""
    text = SHIPPED_CONF.read_text()
    for old, new in (("server web:8000;", f"server 127.0.0.1:{upstream_port};"),
                     ("listen 80;", f"listen 127.0.0.1:{listen_port};")):
        assert text.count(old) == 1, f"{SHIPPED_CONF.name} no longer says {old!r}: update render_shipped"
        text = text.replace(old, new)
    return text


def balancer_conf(upstream_port: int, ports: dict[str, int]) -> str:
    """A load balancer in front of the shipped nginx: one server per egress address."""
    servers = [
        f"""server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://127.0.0.1:{upstream_port};
        proxy_bind {egress};
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
}}"""
        for egress, port in ports.items()
    ]
    return "\n".join(servers)


class Nginx:
    """A foreground nginx (no daemon) with its pid file, logs and temp dirs under ``prefix``."""

    def __init__(self, prefix: Path, site: str, ports: list[int]) -> None:
        self.prefix = prefix
        self.ports = ports
        prefix.mkdir(parents=True)
        (prefix / "site.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
        # As root, nginx's workers would switch to "nobody", who cannot write the temp dirs here.
        user = "user root root;" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(f"""daemon off;
{user}
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
{temp}
    include {prefix / "site.conf"};
}}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = str(self.prefix / "nginx.conf")
        log = (self.prefix / "stderr.log").open("ab")
        self.proc = subprocess.Popen([nginx_binary(), "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                                      "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        for port in self.ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited at start-up:\n{(self.prefix / 'error.log').read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"nginx did not listen on {port}") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class ProxiedServer(LiveServer):
    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("FORWARDED_ALLOW_IPS", None)
        env.update(FLOWDECK_TRUSTED_PROXIES=f"{NGINX_ADDRESS},{TRUSTED_BALANCER}",
                   API_KEY_FAILURE_LIMIT_PER_IP=str(KEY_FAILURE_LIMIT))
        return env


class Chain:
    def __init__(self, proxy_port: int, balancer_ports: dict[str, int]) -> None:
        self.proxy_url = f"http://127.0.0.1:{proxy_port}"
        self.balancer_urls = {egress: f"http://127.0.0.1:{port}" for egress, port in balancer_ports.items()}


@pytest.fixture(scope="module")
def chain(django_db_setup, tmp_path_factory) -> Iterator[Chain]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("proxy-chain")
    server = ProxiedServer(periodic_every=None, log_dir=base)
    proxy_port = free_port()
    balancer_ports = {TRUSTED_BALANCER: free_port(), UNTRUSTED_BALANCER: free_port()}
    proxy = Nginx(base / "nginx", render_shipped(listen_port=proxy_port, upstream_port=server.port), [proxy_port])
    balancer = Nginx(base / "balancer", balancer_conf(proxy_port, balancer_ports), list(balancer_ports.values()))
    server.start(timeout=60)
    try:
        proxy.start()
        balancer.start()
        yield Chain(proxy_port, balancer_ports)
    finally:
        balancer.stop()
        proxy.stop()
        server.stop()


@pytest.fixture
def acme(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def _client(base_url: str, source: str, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=source), timeout=15,
                        **kwargs)  # type: ignore[arg-type]


def _address_seen(base_url: str, world: WorkspaceWorld, source: str, forwarded_for: str | None) -> str:
    """The address the server records for a request from ``source`` through ``base_url``: the
    audit log entry of the service account it creates, read back through the API."""
    headers = {"Authorization": f"Bearer {world.keys[Role.OWNER]}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    with _client(f"{base_url}/api/v1/workspaces/{world.workspace.slug}/", source, headers=headers) as api:
        created = api.post("service-accounts/", json={"name": f"ci-{random.randrange(10**9)}", "role": Role.VIEWER})
        assert created.status_code == 201, created.text
        log = api.get("audit-log/")
        assert log.status_code == 200, log.text
    [entry] = [e for e in log.json()["results"] if e["target_id"] == created.json()["id"]]
    return entry["ip_address"]


@pytest.mark.parametrize("forwarded_for", [None, "1.2.3.4", "1.2.3.4, 127.0.0.3", "127.0.0.1"])
def test_a_made_up_forwarded_for_does_not_change_the_client_address(chain: Chain, acme: WorkspaceWorld,
                                                                    forwarded_for: str | None):
    # Whatever the client claims, even to have come through a trusted proxy, nginx appends the
    # address it really came from, and that is the right-most untrusted one.
    source = client_address()
    assert _address_seen(chain.proxy_url, acme, source, forwarded_for) == source


@same_chain_group
def test_the_key_failure_limit_counts_the_real_address_whatever_it_forwards(chain: Chain):
    source = client_address()
    statuses = []
    with _client(chain.proxy_url, source) as client:
        for i in range(KEY_FAILURE_LIMIT + 2):
            response = client.get("/api/v1/workspaces/acme/projects/",
                                  headers={"Authorization": "Bearer fd_not_a_key", "X-Forwarded-For": f"203.0.113.{i}"})
            statuses.append(response.status_code)
    # A fresh made-up address each time is still one bucket: the client's own.
    assert statuses == [401] * KEY_FAILURE_LIMIT + [429, 429]


def test_behind_two_trusted_proxies_the_right_most_untrusted_address_is_the_client(chain: Chain, acme: WorkspaceWorld):
    source = client_address()
    # client -> balancer (leaves from 127.0.0.3, trusted) -> the shipped nginx -> Flowdeck: the
    # forwarded chain reads "1.2.3.4, <client>, 127.0.0.3" and the server walks it from the right.
    assert _address_seen(chain.balancer_urls[TRUSTED_BALANCER], acme, source, "1.2.3.4") == source
    # Through a balancer that is not trusted, nothing it forwards is believed: it is the client.
    assert _address_seen(chain.balancer_urls[UNTRUSTED_BALANCER], acme, source, "1.2.3.4") == UNTRUSTED_BALANCER


@same_chain_group
def test_a_body_over_the_limit_gets_flowdecks_413_through_nginx(chain: Chain):
    # nginx's client_max_body_size sits just above MAX_REQUEST_BODY_BYTES, so the refusal a client
    # gets is Flowdeck's own error body, not nginx's HTML page.
    body = b"x" * (settings.MAX_REQUEST_BODY_BYTES + 1)
    with _client(chain.proxy_url, client_address()) as client:
        response = client.post("/api/v1/workspaces/acme/projects/", content=body,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


# --- the setting itself ----------------------------------------------------------------------------


def _server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWDECK_TRUSTED_PROXIES", "FORWARDED_ALLOW_IPS")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def test_the_server_refuses_to_start_trusting_every_address_in_production():
    completed = subprocess.run(
        [sys.executable, "-m", "config.serve", "--workers", "1", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT, env=_server_env(FLOWDECK_PRODUCTION="true", FLOWDECK_TRUSTED_PROXIES="*",
                                  SECRET_KEY="proxy-chain-test-" + "k" * 50),
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode != 0
    assert "FLOWDECK_TRUSTED_PROXIES" in completed.stderr


def test_uvicorns_own_variable_is_still_read_when_the_setting_is_unset():
    script = "from django.conf import settings; print(','.join(settings.FLOWDECK_TRUSTED_PROXIES))"
    read = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_server_env(FORWARDED_ALLOW_IPS="10.1.2.3"),
                          capture_output=True, text=True, timeout=60, check=True)
    assert read.stdout.strip() == "10.1.2.3"


def test_trusted_proxies_are_addresses_or_networks(settings) -> None:  # type: ignore[no-untyped-def]
    settings.FLOWDECK_TRUSTED_PROXIES = ["10.0.0.0/8", " 192.168.1.7/24", "::1", ""]
    assert trusted_proxies() == ["10.0.0.0/8", "192.168.1.0/24", "::1"]
    settings.FLOWDECK_TRUSTED_PROXIES = ["proxy"]  # uvicorn would compare it as text and never match
    with pytest.raises(SystemExit, match="'proxy' is not an IP address or network"):
        trusted_proxies()
    # Allowed off production, with a warning (core/checks.py refuses it in production).
    settings.FLOWDECK_TRUSTED_PROXIES = ["*"]
    assert trusted_proxies() == ["*"]
