"""Local stand-ins for the Docker Engine API and the Kubernetes API, for the few endpoints the agents
use. Each is a real HTTP server on 127.0.0.1 (threaded ``http.server``) that records every request
and answers the way the real API does, so the agents are driven through the real ``docker`` and
``kubernetes`` client libraries, down to the HTTP they send."""

from __future__ import annotations

import json
import re
import struct
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Reply:
    status: int
    body: Any = None
    content_type: str = "application/json"
    raw: bytes | None = None


class FakeAPI:
    """Routes ``(method, regex)`` → handler(call, *groups) → :class:`Reply`; records every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.routes: list[tuple[str, re.Pattern[str], Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode()
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                call = Call(self.command, unquote(parts.path), query, body)
                with api.lock:
                    api.calls.append(call)
                    reply = api.dispatch(call)
                payload = reply.raw if reply.raw is not None else (
                    b"" if reply.body is None else json.dumps(reply.body).encode())
                self.send_response(reply.status)
                if payload or reply.status not in (204, 304):
                    self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def route(self, method: str, pattern: str, handler: Any) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def dispatch(self, call: Call) -> Reply:
        for method, pattern, handler in self.routes:
            match = pattern.match(call.path)
            if method == call.method and match:
                reply: Reply = handler(call, *match.groups())
                return reply
        return Reply(404, {"message": f"fake API: no route for {call.method} {call.path}"})

    def start(self) -> FakeAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        pattern = re.compile(path_regex)
        with self.lock:
            return [c for c in self.calls if c.method == method and pattern.search(c.path)]


# --- Docker Engine API ----------------------------------------------------------------------------

DOCKER_API = "1.45"
V = rf"/v{re.escape(DOCKER_API)}"


@dataclass
class FakeContainer:
    id: str
    name: str
    config: dict[str, Any]
    status: str = "created"
    exit_code: int = 0
    oom_killed: bool = False
    output: str = ""

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Name": "/" + self.name,
            "Image": self.config.get("Image"),
            "Config": {"Tty": False, "Image": self.config.get("Image"), "Env": self.config.get("Env"),
                       "Labels": self.config.get("Labels"), "Cmd": self.config.get("Cmd")},
            "HostConfig": self.config.get("HostConfig") or {},
            "State": {"Status": self.status, "Running": self.status == "running", "ExitCode": self.exit_code,
                      "OOMKilled": self.oom_killed, "Error": ""},
        }


@dataclass
class FakeDocker(FakeAPI):
    """Images, containers, pulls. ``images`` holds present images; ``pullable`` which can be pulled."""

    images: set[str] = field(default_factory=set)
    pullable: set[str] = field(default_factory=set)
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    fail_start: str | None = None

    def __post_init__(self) -> None:
        super().__init__()
        self.route("GET", r"/version", lambda c: Reply(200, {"ApiVersion": DOCKER_API, "Version": "27.0.0",
                                                            "MinAPIVersion": "1.24"}))
        self.route("GET", V + r"/images/(.+)/json", self.image_inspect)
        self.route("POST", V + r"/images/create", self.image_pull)
        self.route("POST", V + r"/containers/create", self.container_create)
        self.route("GET", V + r"/containers/([^/]+)/json", self.container_inspect)
        self.route("POST", V + r"/containers/([^/]+)/start", self.container_start)
        self.route("POST", V + r"/containers/([^/]+)/kill", self.container_kill)
        self.route("POST", V + r"/containers/([^/]+)/wait", self.container_wait)
        self.route("GET", V + r"/containers/([^/]+)/logs", self.container_logs)
        self.route("DELETE", V + r"/containers/([^/]+)", self.container_remove)

    @staticmethod
    def _normal(image: str) -> str:
        return image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"

    def image_inspect(self, call: Call, name: str) -> Reply:
        if self._normal(name) in {self._normal(i) for i in self.images}:
            return Reply(200, {"Id": "sha256:" + uuid.uuid4().hex, "RepoTags": [self._normal(name)]})
        return Reply(404, {"message": f"No such image: {name}"})

    def image_pull(self, call: Call) -> Reply:
        image = f"{call.query['fromImage']}:{call.query.get('tag') or 'latest'}"
        if image not in {self._normal(i) for i in self.pullable}:
            return Reply(404, {"message": f"pull access denied for {call.query['fromImage']}, repository does not "
                                          "exist or may require 'docker login'"})
        self.images.add(image)
        lines = [
            {"status": f"Pulling from {call.query['fromImage']}"}, {"status": f"Downloaded newer image for {image}"}
        ]
        return Reply(200, raw="".join(json.dumps(line) + "\r\n" for line in lines).encode())

    def _get(self, ident: str) -> FakeContainer | None:
        for c in self.containers.values():
            if ident in (c.id, c.name) or c.id.startswith(ident):
                return c
        return None

    def container_create(self, call: Call) -> Reply:
        name = call.query.get("name") or uuid.uuid4().hex[:12]
        if any(c.name == name for c in self.containers.values()):
            return Reply(409, {"message": f'Conflict. The container name "/{name}" is already in use.'})
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        self.containers[cid] = FakeContainer(id=cid, name=name, config=call.body)
        return Reply(201, {"Id": cid, "Warnings": []})

    def container_inspect(self, call: Call, ident: str) -> Reply:
        c = self._get(ident)
        return Reply(200, c.inspect()) if c else Reply(404, {"message": f"No such container: {ident}"})

    def container_start(self, call: Call, ident: str) -> Reply:
        c = self._get(ident)
        if c is None:
            return Reply(404, {"message": f"No such container: {ident}"})
        if self.fail_start:
            return Reply(400, {"message": self.fail_start})
        c.status = "running"
        return Reply(204)

    def container_kill(self, call: Call, ident: str) -> Reply:
        c = self._get(ident)
        if c is None:
            return Reply(404, {"message": f"No such container: {ident}"})
        if c.status != "running":
            return Reply(409, {"message": f"Container {ident} is not running"})
        c.status, c.exit_code = "exited", 143 if call.query.get("signal") == "SIGTERM" else 137
        return Reply(204)

    def container_wait(self, call: Call, ident: str) -> Reply:
        c = self._get(ident)
        return Reply(200, {"StatusCode": c.exit_code}) if c else Reply(404, {"message": "No such container"})

    def container_logs(self, call: Call, ident: str) -> Reply:
        c = self._get(ident)
        if c is None:
            return Reply(404, {"message": "No such container"})
        lines = c.output.splitlines(keepends=True)
        tail = int(call.query.get("tail", "all")) if call.query.get("tail", "all") != "all" else len(lines)
        data = "".join(lines[-tail:]).encode()
        # Not a TTY: the stream is multiplexed, one 8-byte header (stream, size) per frame.
        frame = struct.pack(">BxxxL", 1, len(data)) + data
        return Reply(200, raw=frame, content_type="application/vnd.docker.raw-stream")

    def container_remove(self, call: Call, ident: str) -> Reply:
        c = self._get(ident)
        if c is None:
            return Reply(404, {"message": f"No such container: {ident}"})
        if c.status == "running" and call.query.get("force") not in ("1", "True", "true"):
            return Reply(409, {"message": "You cannot remove a running container"})
        del self.containers[c.id]
        return Reply(204)

    def finish(self, name_or_id: str, exit_code: int, *, oom_killed: bool = False, output: str = "") -> None:
        """The container's process ended (as the engine would report it)."""
        with self.lock:
            c = self._get(name_or_id)
            assert c is not None, name_or_id
            c.status, c.exit_code, c.oom_killed, c.output = "exited", exit_code, oom_killed, output


# --- Kubernetes API -------------------------------------------------------------------------------


@dataclass
class FakeKubernetes(FakeAPI):
    """Jobs of batch/v1 and their pods. Tests move a Job along with :meth:`set_pod` / :meth:`finish`."""

    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()
        jobs = r"/apis/batch/v1/namespaces/([^/]+)/jobs"
        self.route("POST", jobs, self.job_create)
        self.route("GET", jobs + r"/([^/]+)/status", self.job_read)
        self.route("GET", jobs + r"/([^/]+)", self.job_read)
        self.route("DELETE", jobs + r"/([^/]+)", self.job_delete)
        self.route("GET", r"/api/v1/namespaces/([^/]+)/pods", self.pod_list)
        self.route("GET", r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", self.pod_log)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> Reply:
        return Reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                            "reason": reason, "code": code})

    def job_create(self, call: Call, namespace: str) -> Reply:
        job = dict(call.body)
        name = job["metadata"]["name"]
        if (namespace, name) in self.jobs:
            return self._status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
        job["metadata"] = {**job["metadata"], "namespace": namespace, "uid": str(uuid.uuid4()),
                           "creationTimestamp": "2026-01-01T00:00:00Z"}
        job["status"] = {"active": 1}
        self.jobs[(namespace, name)] = job
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        self.pods[(namespace, pod_name)] = {
            "metadata": {"name": pod_name, "namespace": namespace, "labels": {"job-name": name}},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "flow", "image": job["spec"]["template"]["spec"]["containers"][0]["image"],
                 "imageID": "", "ready": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}]},
            "log": "",
        }
        return Reply(201, job)

    def job_read(self, call: Call, namespace: str, name: str) -> Reply:
        job = self.jobs.get((namespace, name))
        if job is None:
            return self._status(404, "NotFound", f'jobs.batch "{name}" not found')
        return Reply(200, job)

    def job_delete(self, call: Call, namespace: str, name: str) -> Reply:
        job = self.jobs.pop((namespace, name), None)
        if job is None:
            return self._status(404, "NotFound", f'jobs.batch "{name}" not found')
        for key in [k for k, p in self.pods.items() if p["metadata"]["labels"].get("job-name") == name]:
            del self.pods[key]
        return Reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                           "details": {"name": name, "group": "batch", "kind": "jobs", "uid": job["metadata"]["uid"]}})

    def pod_list(self, call: Call, namespace: str) -> Reply:
        selector = call.query.get("labelSelector", "")
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        items = [{k: v for k, v in p.items() if k != "log"} for (ns, _), p in self.pods.items()
                 if ns == namespace and all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        return Reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    def pod_log(self, call: Call, namespace: str, pod: str) -> Reply:
        found = self.pods.get((namespace, pod))
        if found is None:
            return self._status(404, "NotFound", f'pods "{pod}" not found')
        lines = found["log"].splitlines()
        tail = int(call.query.get("tailLines") or len(lines))
        return Reply(200, raw="\n".join(lines[-tail:]).encode(), content_type="text/plain")

    def _pod_of(self, namespace: str, job: str) -> dict[str, Any]:
        return next(
            p for (ns, _), p in self.pods.items() if ns == namespace and p["metadata"]["labels"]["job-name"] == job
        )

    def set_pod_state(self, namespace: str, job: str, state: dict[str, Any], *, log: str = "") -> None:
        with self.lock:
            pod = self._pod_of(namespace, job)
            pod["status"]["containerStatuses"][0]["state"] = state
            pod["log"] = log or pod["log"]

    def finish(self, namespace: str, job: str, *, exit_code: int, reason: str = "", log: str = "") -> None:
        """The Job's pod ended: the Job succeeded (exit 0) or failed (backoffLimit 0)."""
        terminated: dict[str, Any] = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0
                                                                                   else "Error")}
        self.set_pod_state(namespace, job, {"terminated": terminated}, log=log)
        with self.lock:
            status = self.jobs[(namespace, job)]["status"]
            status.pop("active", None)
            if exit_code == 0:
                status["succeeded"] = 1
                status["conditions"] = [{"type": "Complete", "status": "True"}]
            else:
                status["failed"] = 1
                status["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                         "message": "Job has reached the specified backoff limit"}]
