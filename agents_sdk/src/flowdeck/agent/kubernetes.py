"""The Kubernetes agent: each flow run is a ``batch/v1`` Job with one pod.

The Job runs ``python -m flowdeck.agent.execute`` from the run config's image with the claim record
in ``FLOWDECK_FLOW_RUN_JSON``, the ``FLOWDECK_*`` connection variables (the API key from a Secret
with ``--api-key-secret``, otherwise as a value) and the run config's variables, their values taken
from the agent's environment. ``backoffLimit: 0`` and ``restartPolicy: Never``: a failed pod is not
restarted by Kubernetes — the Flowdeck server decides about retries. Finished Jobs are removed by
``ttlSecondsAfterFinished``; a cancelled run's Job is deleted at once (propagation ``Background``).

The agent reads the Job's status to see the run end, and the pod's to tell a crash (exit code,
``OOMKilled``) from a pod that could never start (``ImagePullBackOff``, ``InvalidImageName``,
``CreateContainerConfigError``: a pre-start failure). Needs the ``kubernetes`` package.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowdeck import __version__
from flowdeck.agent.base import Agent, ClaimedRun, LaunchError, RunExit, RunHandle
from flowdeck.agent.docker import EXECUTE_COMMAND, run_image
from flowdeck.agent.process import client_settings, flowdeck_env, run_config_env
from flowdeck.agent.resources import Resources

if TYPE_CHECKING:
    from kubernetes.client import BatchV1Api, Configuration, CoreV1Api, V1Job, V1Pod

    from flowdeck.client import Client

logger = logging.getLogger("flowdeck.agent")

PULL_POLICIES = {"always": "Always", "if-not-present": "IfNotPresent", "never": "Never"}
LABEL_PREFIX = "flowdeck.io"
CONTAINER_NAME = "flow"
DEFAULT_TTL_SECONDS = 600
# Pod waiting reasons that will not resolve by waiting: the flow-run code never starts.
FATAL_WAITING_REASONS = frozenset({
    "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
    "CreateContainerError",
})
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(text: str) -> str:
    """A valid label value: at most 63 characters of ``[A-Za-z0-9_.-]``, alphanumeric at both ends."""
    return _LABEL_VALUE.sub("-", text)[:63].strip("-_.")


def job_name(run: ClaimedRun) -> str:
    """``flowdeck-<run id>-<attempt>``: unique per attempt and a valid DNS label (≤ 63 characters)."""
    return f"flowdeck-{run.id}-{run.attempt}".lower()[:63].rstrip("-")


def run_labels(run: ClaimedRun, *, agent_name: str) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}/flow-run-id": label_value(run.id),
        f"{LABEL_PREFIX}/flow-id": label_value(run.flow_id),
        f"{LABEL_PREFIX}/attempt": str(run.attempt),
        f"{LABEL_PREFIX}/agent": label_value(agent_name),
        "app.kubernetes.io/managed-by": "flowdeck",
    }


def build_job_manifest(
    run: ClaimedRun,
    *,
    namespace: str,
    api_url: str,
    api_key: str,
    workspace: str | None,
    agent_name: str,
    lease_seconds: int,
    environ: Mapping[str, str],
    env_vars: Mapping[str, str] | None = None,
    default_image: str | None = None,
    image_pull_policy: str | None = None,
    service_account: str | None = None,
    api_key_secret: tuple[str, str] | None = None,
    resources: Resources | None = None,
    ttl_seconds_after_finished: int | None = DEFAULT_TTL_SECONDS,
) -> dict[str, Any]:
    """The Job for one run, as the Kubernetes API takes it (camelCase keys)."""
    values = run_config_env(run, environ)
    values.update(env_vars or {})
    values.update(flowdeck_env(run, api_url=api_url, api_key=api_key, workspace=workspace))
    values["FLOWDECK_FLOW_RUN_JSON"] = json.dumps(run.launch_record(lease_seconds=lease_seconds),
                                                  separators=(",", ":"))
    values["PYTHONUNBUFFERED"] = "1"
    env: list[dict[str, Any]] = []
    for name, value in values.items():
        if name == "FLOWDECK_API_KEY" and api_key_secret is not None:
            secret, key = api_key_secret
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
        else:
            env.append({"name": name, "value": value})

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": run_image(run, default_image),
        "command": list(EXECUTE_COMMAND),
        "env": env,
    }
    if image_pull_policy:
        container["imagePullPolicy"] = PULL_POLICIES[image_pull_policy]
    limits = Resources.for_run(run.run_config, resources).kubernetes()
    if limits:
        container["resources"] = limits

    labels = run_labels(run, agent_name=agent_name)
    annotations = {f"{LABEL_PREFIX}/flow-run-name": run.name, f"{LABEL_PREFIX}/flowdeck-version": __version__}
    if workspace:
        annotations[f"{LABEL_PREFIX}/workspace"] = workspace
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": pod_spec},
    }
    if ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(run), "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


class KubernetesRunHandle(RunHandle):
    """A flow-run Job."""

    def __init__(self, run: ClaimedRun, *, name: str, namespace: str, batch: BatchV1Api, core: CoreV1Api) -> None:
        super().__init__(run)
        self.name = name
        self.namespace = namespace
        self.batch = batch
        self.core = core
        self.pod_started = False  # once a container ran, waiting reasons no longer matter

    def poll(self) -> RunExit | None:
        from kubernetes.client.exceptions import ApiException

        try:
            job: V1Job = self.batch.read_namespaced_job_status(self.name, self.namespace)
        except ApiException as exc:
            if _is_not_found(exc):
                return RunExit(code=None, reason=f"the Job {self.name} disappeared")
            raise
        status = job.status
        if status is not None and (status.succeeded or 0) > 0:
            return RunExit(code=0, reason=f"the Job {self.name} succeeded")
        failed = status is not None and ((status.failed or 0) > 0 or any(
            c.type == "Failed" and c.status == "True" for c in status.conditions or []))
        if failed:
            assert status is not None
            reasons = [f"{c.reason}: {c.message}".strip(": ") for c in status.conditions or []
                       if c.type == "Failed" and c.status == "True"]
            code, pod_reason = self._terminated()
            detail = "; ".join(filter(None, [pod_reason, *reasons]))
            return RunExit(code=code if code is not None else 1,
                           reason=f"the Job {self.name} failed" + (f" ({detail})" if detail else ""))
        if not self.pod_started:
            waiting = self._fatal_waiting()
            if waiting:
                return RunExit(code=None, failed_to_start=True, reason=f"The flow run's pod could not start: {waiting}")
        return None

    def _pods(self) -> list[V1Pod]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={self.name}")
        return list(pods.items or [])

    def _fatal_waiting(self) -> str | None:
        for pod in self._pods():
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                if cs.state is not None and (cs.state.running is not None or cs.state.terminated is not None):
                    self.pod_started = True
                    return None
                waiting = cs.state.waiting if cs.state is not None else None
                if waiting is not None and waiting.reason in FATAL_WAITING_REASONS:
                    return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
        return None

    def _terminated(self) -> tuple[int | None, str]:
        """The flow container's exit code and reason (e.g. ``OOMKilled``), when a pod shows them."""
        try:
            pods = self._pods()
        except Exception:
            return None, ""
        for pod in pods:
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                term = cs.state.terminated if cs.state is not None else None
                if term is not None:
                    reason = f"exit code {term.exit_code}" + (f", {term.reason}" if term.reason else "")
                    return int(term.exit_code), reason
        return None, ""

    def _delete(self, grace_period_seconds: int | None) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.batch.delete_namespaced_job(self.name, self.namespace, propagation_policy="Background",
                                             grace_period_seconds=grace_period_seconds)
        except ApiException as exc:
            if not _is_not_found(exc):
                raise

    def terminate(self) -> None:
        """Delete the Job: its pod gets SIGTERM, then SIGKILL after the pod's grace period."""
        self._delete(None)

    def kill(self) -> None:
        self._delete(0)

    def output_tail(self) -> str:
        try:
            pods = self._pods()
            if not pods or pods[0].metadata is None or pods[0].metadata.name is None:
                return ""
            text = self.core.read_namespaced_pod_log(pods[0].metadata.name, self.namespace,
                                                     container=CONTAINER_NAME, tail_lines=30)
        except Exception:
            return ""
        return str(text).rstrip()


class KubernetesAgent(Agent):
    """Runs each flow run as a Kubernetes Job (Prefect 1's ``KubernetesAgent``).

    Args (besides :class:`~flowdeck.agent.base.Agent`'s):
        namespace: where the Jobs are created.
        service_account: the pods' service account (default: the namespace's default).
        image_pull_policy: ``always``, ``if-not-present`` or ``never`` (default: Kubernetes' own).
        default_image: the image for runs whose run config names none.
        api_key_secret: ``(secret name, key)`` of a Secret holding the API key, so the key is not
            written into every Job.
        resources: default CPU/memory requests and limits.
        ttl_seconds_after_finished: how long finished Jobs are kept.
        kube_host: the API server URL; default: in-cluster configuration, else the kubeconfig.
        kube_configuration: an explicit ``kubernetes.client.Configuration`` (takes precedence).
    """

    agent_type = "kubernetes"
    watch_interval = 2.0

    def __init__(
        self,
        client: Client,
        *,
        namespace: str = "default",
        service_account: str | None = None,
        image_pull_policy: str | None = None,
        default_image: str | None = None,
        api_key_secret: tuple[str, str] | None = None,
        resources: Resources | None = None,
        ttl_seconds_after_finished: int | None = DEFAULT_TTL_SECONDS,
        kube_host: str | None = None,
        kube_configuration: Configuration | None = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        if image_pull_policy is not None and image_pull_policy not in PULL_POLICIES:
            raise ValueError(f"image_pull_policy must be one of {', '.join(PULL_POLICIES)}, not {image_pull_policy!r}.")
        super().__init__(client, **kwargs)
        from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api

        self.namespace = namespace
        self.service_account = service_account
        self.image_pull_policy = image_pull_policy
        self.default_image = default_image
        self.api_key_secret = api_key_secret
        self.resources = resources or Resources()
        self.resources.validate()
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.environ = environ if environ is not None else os.environ
        api = ApiClient(kube_configuration or kube_config(kube_host))
        self.batch = BatchV1Api(api)
        self.core = CoreV1Api(api)

    def job_manifest(self, run: ClaimedRun) -> dict[str, Any]:
        api_url, api_key, workspace = client_settings(self.client)
        return build_job_manifest(
            run, namespace=self.namespace, api_url=api_url, api_key=api_key, workspace=workspace,
            agent_name=self.name, lease_seconds=self.lease_seconds, environ=self.environ, env_vars=self.env_vars,
            default_image=self.default_image, image_pull_policy=self.image_pull_policy,
            service_account=self.service_account, api_key_secret=self.api_key_secret, resources=self.resources,
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
        )

    def launch(self, run: ClaimedRun) -> KubernetesRunHandle:
        from kubernetes.client import V1Job
        from kubernetes.client.exceptions import ApiException
        from pydantic import ValidationError

        manifest = self.job_manifest(run)
        try:
            body = V1Job.from_dict(manifest)
        except ValidationError as exc:
            raise LaunchError(f"The Job manifest for this run is invalid: {exc}") from None
        assert body is not None
        try:
            self.batch.create_namespaced_job(self.namespace, body)
        except ApiException as exc:
            if exc.status in (400, 403, 404, 409, 422):  # refused as is: it would be refused again
                raise LaunchError(f"Kubernetes refused the Job: {exc.status} {exc.reason}: {_message(exc)}") from None
            raise
        name = str(manifest["metadata"]["name"])
        logger.info("Created Job %s/%s for flow run %s (%s)", self.namespace, name, run.name, run.id,
                    extra={"flow_run_id": run.id, "job": name})
        return KubernetesRunHandle(run, name=name, namespace=self.namespace, batch=self.batch, core=self.core)


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    try:
        return str(json.loads(body).get("message") or body) if body else ""
    except (ValueError, AttributeError):
        return str(body)


def kube_config(host: str | None) -> Configuration:
    """The API server configuration: ``host`` when given, else in-cluster, else the kubeconfig."""
    from kubernetes import config as kconfig
    from kubernetes.client import Configuration

    configuration = Configuration()
    if host:
        configuration.host = host.rstrip("/")
        return configuration
    try:
        kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kconfig.ConfigException:
        try:
            kconfig.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (kconfig.ConfigException, OSError) as exc:
            raise RuntimeError(
                "No Kubernetes configuration: not running in a cluster and no usable kubeconfig "
                f"({exc}). Pass --kube-host or set KUBECONFIG."
            ) from None
    return configuration
