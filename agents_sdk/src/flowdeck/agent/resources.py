"""CPU and memory requests/limits for container runs, in Kubernetes' notation.

A run config may carry ``cpu_request``, ``cpu_limit``, ``memory_request`` and ``memory_limit``
(Prefect 1's ``KubernetesRun`` names); the agent's flags give defaults for runs that do not. CPU is
in cores (``"0.5"``, ``"500m"``, ``2``), memory in bytes with an optional suffix (``"512Mi"``,
``"1Gi"``, ``"256M"``, or Docker's ``"512m"``/``"1g"``). The Kubernetes agent passes them through;
the Docker agent converts them (``nano_cpus``, ``mem_limit`` …).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from flowdeck.agent.base import LaunchError

RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_MEMORY_FACTORS = {
    "": 1, "b": 1,
    "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,  # Kubernetes decimal suffixes (K, M, G, T)
    "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4,
}
# Docker's lower-case suffixes are binary (``512m`` is 512 MiB), Kubernetes' ``m`` is a milli-unit:
# a memory quantity ending in a lone lower-case k/m/g is read the Docker way.
_DOCKER_SUFFIXES = {"k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(quantity: str | int | float) -> int:
    """``"512Mi"`` → 536870912; ``"1G"`` → 10**9; ``"512m"`` (Docker) → 536870912; ``2048`` → 2048."""
    if isinstance(quantity, bool):
        raise ValueError("a memory quantity, not a boolean")
    if isinstance(quantity, int | float):
        return int(quantity)
    match = _MEMORY.match(quantity)
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r} (e.g. 512Mi, 1Gi, 256M)")
    number, suffix = Decimal(match.group(1)), match.group(2)
    if suffix in _DOCKER_SUFFIXES:
        factor = _DOCKER_SUFFIXES[suffix]
    elif suffix.lower() in _MEMORY_FACTORS:
        factor = _MEMORY_FACTORS[suffix.lower()]
    else:
        raise ValueError(f"unknown memory unit {suffix!r} in {quantity!r} (use Ki, Mi, Gi, K, M, G)")
    return int(number * factor)


def cpu_cores(quantity: str | int | float) -> Decimal:
    """``"500m"`` → 0.5; ``"2"`` → 2; ``0.25`` → 0.25."""
    if isinstance(quantity, bool):
        raise ValueError("a CPU quantity, not a boolean")
    text = str(quantity).strip()
    try:
        cores = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a CPU quantity: {quantity!r} (e.g. 0.5, 500m, 2)") from None
    if cores <= 0:
        raise ValueError(f"a CPU quantity must be positive: {quantity!r}")
    return cores


def _kubernetes_quantity(value: str | int | float) -> str:
    return str(value).strip()


@dataclass(frozen=True)
class Resources:
    """Requests and limits, each ``None`` when not set."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None

    @classmethod
    def for_run(cls, run_config: Mapping[str, Any], defaults: Resources | None = None) -> Resources:
        """The run config's values over the agent's defaults; a malformed value is the run's pre-start
        failure (it would fail the same way on every attempt)."""
        base = defaults or cls()
        values: dict[str, str | None] = {}
        for key in RESOURCE_KEYS:
            raw = run_config.get(key)
            values[key] = _kubernetes_quantity(raw) if raw not in (None, "") else getattr(base, key)
        resources = cls(**values)
        try:
            resources.validate()
        except ValueError as exc:
            raise LaunchError(f"Invalid resources in the run config: {exc}") from None
        return resources

    def validate(self) -> None:
        for name in ("cpu_request", "cpu_limit"):
            value = getattr(self, name)
            if value is not None:
                cpu_cores(value)
        for name in ("memory_request", "memory_limit"):
            value = getattr(self, name)
            if value is not None:
                memory_bytes(value)

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def kubernetes(self) -> dict[str, dict[str, str]]:
        """``{"requests": {...}, "limits": {...}}`` for a container spec (only what is set)."""
        requests = {k: v for k, v in (("cpu", self.cpu_request), ("memory", self.memory_request)) if v}
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        out: dict[str, dict[str, str]] = {}
        if requests:
            out["requests"] = requests
        if limits:
            out["limits"] = limits
        return out

    def docker(self) -> dict[str, int]:
        """Keyword arguments of ``containers.create``: a CPU limit becomes ``nano_cpus``, a CPU
        request relative ``cpu_shares`` (1024 per core), memory ``mem_limit``/``mem_reservation`` in bytes."""
        out: dict[str, int] = {}
        if self.cpu_limit:
            out["nano_cpus"] = int(cpu_cores(self.cpu_limit) * 10**9)
        if self.cpu_request:
            out["cpu_shares"] = max(2, int(cpu_cores(self.cpu_request) * 1024))
        if self.memory_limit:
            out["mem_limit"] = memory_bytes(self.memory_limit)
        if self.memory_request:
            out["mem_reservation"] = memory_bytes(self.memory_request)
        return out
