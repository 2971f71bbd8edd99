"""An HTTP proxy a test puts between the SDK processes and the live server: it records every request
(method, path, status) and can play an older server that has no combined report endpoint (it
answers ``…/report/`` with 404 itself, as such a server's router does)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class CountingProxy:
    def __init__(self, target_url: str) -> None:
        self.target_url = target_url.rstrip("/")
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        # The body of each combined report, in order (what its parts were).
        self.reports: list[tuple[str, dict[str, Any]]] = []  # (path, body)
        self.without_report = False
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.target_url, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                if proxy.without_report and path.endswith("/report/"):
                    status, headers, content = 404, {"Content-Type": "application/json"}, json.dumps(
                        {"error": {"code": "not_found", "message": "Not found."}}).encode()
                else:
                    upstream = proxy._http.request(
                        self.command, self.path, content=body,
                        headers={k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP})
                    status, content = upstream.status_code, upstream.content
                    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                with proxy._lock:
                    proxy.requests.append((self.command, path, status))
                    if path.endswith("/report/") and status < 400:
                        proxy.reports.append((path, json.loads(body or b"{}")))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def of_run(self, run_id: str) -> list[tuple[str, str, int]]:
        """The requests about one run (the flow-run process's, and the agent's for that run)."""
        with self._lock:
            return [r for r in self.requests if f"/flow-runs/{run_id}/" in r[1]]

    def snapshot(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return list(self.requests)

    def reports_of(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for path, body in self.reports if f"/flow-runs/{run_id}/" in path]
