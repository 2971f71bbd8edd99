"""SLA policies declared next to a flow: ``flowdeck register`` creates, updates and removes them.

::

    from datetime import timedelta

    from flowdeck import Flow
    from flowdeck.sla import AgentCoverage, Failures, FinishWithin, Freshness, PrestartFailure, StartWithin

    with Flow("etl", sla=[
        StartWithin(minutes=10),                          # a run starts within 10 min of its scheduled time
        FinishWithin(hours=1, predictive=True),           # …finishes within 1 h of starting (warns at its p95)
        Failures(consecutive=3, action="pause_schedules"),
        Freshness(hours=24),                              # a successful run at least every 24 h
        AgentCoverage(["gpu"], minutes=5),                # some healthy agent covers "gpu"
        PrestartFailure(channels=["ops-pager"]),          # a run failed before its code started
    ]) as flow:
        ...

Each class is one of the server's policy kinds (``KINDS``). Every policy takes ``name`` (default:
its kind's name; two of a kind on one flow need names of their own), ``labels`` (only runs
carrying all of them; not for ``AgentCoverage``), ``action`` on breach (default: alert only;
``cancel_run`` and ``fail_run`` for ``StartWithin``/``FinishWithin``, which name the run to act on;
``pause_schedules`` for every kind but ``AgentCoverage``), ``severity`` (``SEVERITIES``),
``channels`` (names of the workspace's notification channels) and ``description``. Mistakes are
``ValueError``/``TypeError`` when the policy is built, before anything reaches the server.

Every registration states the flow's policies: the server keeps each under the flow (as ``"<flow
name>: <name>"``), updates those that changed, and deletes the flow's registered policies that are
no longer declared (a flow declaring none has its registered ones removed). Left out, ``channels``
and ``description`` stay as people set them in the web app; given, they are what the code says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

# The server's choices (orchestration.alerts.models PolicyKind, BreachAction, Severity); a contract
# test keeps these tables and the server's in step.
KINDS = ("start", "duration", "failure", "freshness", "agent", "prestart")
ACTIONS = ("none", "cancel_run", "fail_run", "pause_schedules")
SEVERITIES = ("critical", "warning")

MIN_THRESHOLD_SECONDS = 60
MAX_THRESHOLD_SECONDS = 30 * 24 * 3600
MAX_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 2000
MAX_LABELS = 50
MAX_LABEL_LENGTH = 100
MAX_CHANNELS = 20
MAX_CHANNEL_NAME_LENGTH = 200
MAX_POLICIES_PER_FLOW = 50
MIN_HISTORY_SIZE = 5
MAX_HISTORY_SIZE = 1000
MAX_CONSECUTIVE_FAILURES = 100


def _threshold(owner: str, within: timedelta | None, days: float, hours: float, minutes: float,
               seconds: float) -> int:
    """Whole seconds of ``within`` or of the keyword parts; at least a minute."""
    if within is not None and not isinstance(within, timedelta):
        raise TypeError(f"{owner}: give the time as a timedelta or as keywords, e.g. {owner}(minutes=10) "
                        f"or {owner}(timedelta(minutes=10)); got {type(within).__name__} {within!r}.")
    parts = {"days": days, "hours": hours, "minutes": minutes, "seconds": seconds}
    for key, value in parts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{owner}({key}=...) must be a number, not {type(value).__name__}.")
    keyword_total = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if within is not None and keyword_total:
        raise ValueError(f"{owner}: give the time once, either as a timedelta or as keywords, not both.")
    total = within if within is not None else keyword_total
    if not total:
        raise ValueError(f"{owner} needs a time, e.g. {owner}(minutes=10).")
    value = total.total_seconds()
    if value < MIN_THRESHOLD_SECONDS:
        raise ValueError(f"{owner}: the time must be at least 1 minute (got {value:g} s).")
    if value > MAX_THRESHOLD_SECONDS:
        raise ValueError(f"{owner}: the time must be at most 30 days (got {total}).")
    if value != int(value):
        raise ValueError(f"{owner}: the time must be whole seconds (got {value:g} s).")
    return int(value)


def _strings(owner: str, what: str, values: Iterable[str] | None, *, limit: int,
             item_limit: int = MAX_LABEL_LENGTH) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        raise TypeError(f"{owner}({what}=...) takes a list of names, e.g. {what}=[{values!r}].")
    items = list(values)
    if len(items) > limit:
        raise ValueError(f"{owner}({what}=...): at most {limit} items (got {len(items)}).")
    clean: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{owner}({what}=...): {item!r} is not a name (a non-empty string).")
        if len(item.strip()) > item_limit:
            raise ValueError(f"{owner}({what}=...): {item[:40]!r}… is longer than {item_limit} characters.")
        clean.append(item.strip())
    return sorted(set(clean))


def _int_in(owner: str, what: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}({what}=...) must be a whole number, not {type(value).__name__}.")
    if not low <= value <= high:
        raise ValueError(f"{owner}({what}=...) must be between {low} and {high} (got {value}).")
    return value


class SlaPolicy:
    """What every declared SLA policy has; use one of the subclasses (one per kind)."""

    kind: ClassVar[str] = ""
    default_name: ClassVar[str] = ""
    #: The actions on breach this kind can take (besides "none", alert only).
    actions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, name: str | None = None, labels: Iterable[str] | None = None, action: str | None = None,
                 severity: str = "critical", channels: Iterable[str] | None = None,
                 description: str | None = None) -> None:
        owner = type(self).__name__
        if not self.kind:
            raise TypeError("SlaPolicy is the base class; declare StartWithin, FinishWithin, Failures, Freshness, "
                            "AgentCoverage or PrestartFailure.")
        if name is None:
            name = self.default_name
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{owner}(name=...) must be a non-empty string.")
        if len(name.strip()) > MAX_NAME_LENGTH:
            raise ValueError(f"{owner}(name=...) is longer than {MAX_NAME_LENGTH} characters.")
        action = "none" if action is None else action
        if action not in ACTIONS:
            raise ValueError(f"{owner}(action={action!r}) is not an action; choose one of "
                             f"{', '.join(repr(a) for a in ACTIONS if a != 'none')} (or leave it out: alert only).")
        if action != "none" and action not in self.actions:
            possible = ", ".join(repr(a) for a in self.actions) or "none"
            raise ValueError(f"{owner} cannot take the action {action!r} on a breach (possible: {possible}).")
        if severity not in SEVERITIES:
            raise ValueError(f"{owner}(severity={severity!r}) is not a severity; choose "
                             f"{' or '.join(repr(s) for s in SEVERITIES)}.")
        if description is not None and (not isinstance(description, str)
                                        or len(description.strip()) > MAX_DESCRIPTION_LENGTH):
            raise ValueError(f"{owner}(description=...) must be a string of at most {MAX_DESCRIPTION_LENGTH} "
                             "characters.")
        self.name = name.strip()
        self.labels = _strings(owner, "labels", labels, limit=MAX_LABELS)
        self.action = action
        self.severity = severity
        # None: the channels people attach in the web app are kept; a list (even empty) is the truth.
        self.channels = None if channels is None else _strings(owner, "channels", channels, limit=MAX_CHANNELS,
                                                                 item_limit=MAX_CHANNEL_NAME_LENGTH)
        # None: the description people write in the web app is kept.
        self.description = None if description is None else description.strip()

    def _kind_fields(self, flow_labels: Sequence[str]) -> dict[str, Any]:
        return {}

    def serialize(self, flow_labels: Sequence[str] = ()) -> dict[str, Any]:
        """The ``sla_policies`` item of the registration metadata (``flow_labels``: the flow's labels,
        which an ``AgentCoverage`` without labels of its own is about)."""
        data = {"name": self.name, "kind": self.kind, **self._kind_fields(flow_labels), "labels": list(self.labels),
                "action": self.action, "severity": self.severity}
        if self.channels is not None:
            data["channels"] = list(self.channels)
        if self.description is not None:
            data["description"] = self.description
        return data

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items() if value is not None)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))


class _Timed(SlaPolicy):
    def __init__(self, within: timedelta | None = None, *, days: float = 0, hours: float = 0, minutes: float = 0,
                 seconds: float = 0, **common: Any) -> None:
        super().__init__(**common)
        self.threshold_seconds = _threshold(type(self).__name__, within, days, hours, minutes, seconds)

    def _kind_fields(self, flow_labels: Sequence[str]) -> dict[str, Any]:
        return {"threshold_seconds": self.threshold_seconds}


class StartWithin(_Timed):
    """Runs start within this time of their scheduled start. Includes runs no live agent can take
    (their labels are covered by none): the alert names that cause."""

    kind = "start"
    default_name = "start within"
    actions = ("cancel_run", "fail_run", "pause_schedules")

    def __init__(self, within: timedelta | None = None, *, days: float = 0, hours: float = 0, minutes: float = 0,
                 seconds: float = 0, name: str | None = None, labels: Iterable[str] | None = None,
                 action: str | None = None, severity: str = "critical", channels: Iterable[str] | None = None,
                 description: str | None = None) -> None:
        super().__init__(within, days=days, hours=hours, minutes=minutes, seconds=seconds, name=name, labels=labels,
                         action=action, severity=severity, channels=channels, description=description)


class FinishWithin(_Timed):
    """Runs finish within this time of starting. ``predictive=True`` also warns while a run is still
    running once its elapsed time passes the flow's p95 of its last ``history_size`` successful runs
    (when that is below the limit)."""

    kind = "duration"
    default_name = "finish within"
    actions = ("cancel_run", "fail_run", "pause_schedules")

    def __init__(self, within: timedelta | None = None, *, days: float = 0, hours: float = 0, minutes: float = 0,
                 seconds: float = 0, predictive: bool = False, history_size: int = 20, name: str | None = None,
                 labels: Iterable[str] | None = None, action: str | None = None, severity: str = "critical",
                 channels: Iterable[str] | None = None, description: str | None = None) -> None:
        super().__init__(within, days=days, hours=hours, minutes=minutes, seconds=seconds, name=name, labels=labels,
                         action=action, severity=severity, channels=channels, description=description)
        if not isinstance(predictive, bool):
            raise TypeError(f"FinishWithin(predictive=...) must be True or False, not {predictive!r}.")
        self.predictive = predictive
        self.history_size = _int_in("FinishWithin", "history_size", history_size, MIN_HISTORY_SIZE, MAX_HISTORY_SIZE)

    def _kind_fields(self, flow_labels: Sequence[str]) -> dict[str, Any]:
        return {"threshold_seconds": self.threshold_seconds, "predictive": self.predictive,
                "history_size": self.history_size}


class Failures(SlaPolicy):
    """A run ends FAILED or CRASHED with its retries exhausted (``consecutive=1``, the default), or
    ``consecutive`` runs of the flow in a row do."""

    kind = "failure"
    default_name = "failures"
    actions = ("pause_schedules",)

    def __init__(self, consecutive: int = 1, *, name: str | None = None, labels: Iterable[str] | None = None,
                 action: str | None = None, severity: str = "critical", channels: Iterable[str] | None = None,
                 description: str | None = None) -> None:
        super().__init__(name=name, labels=labels, action=action, severity=severity, channels=channels,
                         description=description)
        self.consecutive_failures = _int_in("Failures", "consecutive", consecutive, 1, MAX_CONSECUTIVE_FAILURES)

    def _kind_fields(self, flow_labels: Sequence[str]) -> dict[str, Any]:
        return {"consecutive_failures": self.consecutive_failures}


class Freshness(_Timed):
    """The flow has a successful run at least every this long."""

    kind = "freshness"
    default_name = "freshness"
    actions = ("pause_schedules",)

    def __init__(self, within: timedelta | None = None, *, days: float = 0, hours: float = 0, minutes: float = 0,
                 seconds: float = 0, name: str | None = None, labels: Iterable[str] | None = None,
                 action: str | None = None, severity: str = "critical", channels: Iterable[str] | None = None,
                 description: str | None = None) -> None:
        super().__init__(within, days=days, hours=hours, minutes=minutes, seconds=seconds, name=name, labels=labels,
                         action=action, severity=severity, channels=channels, description=description)


class AgentCoverage(_Timed):
    """Some healthy agent covers ``agent_labels``; alert after none has for this long. Without
    ``agent_labels`` the policy is about the labels the flow's runs carry (``Flow(labels=...)``).
    It watches agents, not runs: it takes no run ``labels`` and no action."""

    kind = "agent"
    default_name = "agent coverage"
    actions = ()

    def __init__(self, agent_labels: Iterable[str] | None = None, within: timedelta | None = None, *,
                 days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0, name: str | None = None,
                 action: str | None = None, severity: str = "critical", channels: Iterable[str] | None = None,
                 description: str | None = None) -> None:
        if isinstance(agent_labels, timedelta):
            raise TypeError("AgentCoverage takes the agent labels first: AgentCoverage(['gpu'], minutes=5).")
        super().__init__(within, days=days, hours=hours, minutes=minutes, seconds=seconds, name=name, labels=None,
                         action=action, severity=severity, channels=channels, description=description)
        self.agent_labels: list[str] | None = None
        if agent_labels is not None:
            self.agent_labels = _strings("AgentCoverage", "agent_labels", agent_labels, limit=MAX_LABELS)
            if not self.agent_labels:
                raise ValueError("AgentCoverage needs at least one agent label, e.g. AgentCoverage(['gpu'], "
                                 "minutes=5) (or none at all: the flow's labels).")

    def _kind_fields(self, flow_labels: Sequence[str]) -> dict[str, Any]:
        covered = self.agent_labels if self.agent_labels is not None else sorted(set(flow_labels))
        if not covered:
            raise ValueError(f"{self.name!r} (AgentCoverage) has no labels to watch: the flow has none; give them, "
                             "e.g. AgentCoverage(['gpu'], minutes=5), or Flow(labels=[...]).")
        return {"threshold_seconds": self.threshold_seconds, "agent_labels": list(covered)}


class PrestartFailure(SlaPolicy):
    """A run failed before its code started (claim, image pull, storage or import error reported by
    the agent); the alert carries the agent's error."""

    kind = "prestart"
    default_name = "prestart failure"
    actions = ("pause_schedules",)

    def __init__(self, *, name: str | None = None, labels: Iterable[str] | None = None, action: str | None = None,
                 severity: str = "critical", channels: Iterable[str] | None = None,
                 description: str | None = None) -> None:
        super().__init__(name=name, labels=labels, action=action, severity=severity, channels=channels,
                         description=description)


def check_policies(flow_name: str, policies: Iterable[Any]) -> list[SlaPolicy]:
    """``Flow(sla=...)``: a list of policies with names unique within the flow."""
    if isinstance(policies, SlaPolicy):
        raise TypeError(f"Flow {flow_name!r}: sla= takes a list of policies, e.g. sla=[{policies!r}].")
    checked: list[SlaPolicy] = []
    names: dict[str, SlaPolicy] = {}
    for policy in policies:
        if len(checked) >= MAX_POLICIES_PER_FLOW:
            raise ValueError(f"Flow {flow_name!r} declares more than {MAX_POLICIES_PER_FLOW} SLA policies.")
        if not isinstance(policy, SlaPolicy):
            raise TypeError(f"Flow {flow_name!r}: sla= takes flowdeck.sla policies (StartWithin, FinishWithin, "
                            f"Failures, Freshness, AgentCoverage, PrestartFailure), not {type(policy).__name__}.")
        if policy.name in names:
            raise ValueError(f"Flow {flow_name!r} declares two SLA policies named {policy.name!r}; give one of "
                             f"them its own name=, e.g. {type(policy).__name__}(..., name=\"{policy.name} 2\").")
        names[policy.name] = policy
        checked.append(policy)
    return checked


def serialize_policies(flow_name: str, policies: Iterable[SlaPolicy], flow_labels: Sequence[str] = ()
                       ) -> list[dict[str, Any]]:
    """The ``sla_policies`` of the registration metadata, by name (stable for the same code)."""
    checked = check_policies(flow_name, policies)
    return [policy.serialize(flow_labels) for policy in sorted(checked, key=lambda p: p.name)]


__all__ = [
    "ACTIONS",
    "KINDS",
    "SEVERITIES",
    "AgentCoverage",
    "Failures",
    "FinishWithin",
    "Freshness",
    "PrestartFailure",
    "SlaPolicy",
    "StartWithin",
    "check_policies",
    "serialize_policies",
]
