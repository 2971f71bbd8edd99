"""Notification channels: where a workspace's incidents are told (e-mail, a signed webhook, a
Slack-compatible incoming webhook, PagerDuty Events API v2), the check every target URL passes (A2),
and the reads people make of channels and their delivery log.

Only Admins configure channels (``notification_channel:manage``): a target is a URL the server
calls. Everyone in the workspace reads them (``notification_channel:read``), but only Admins see the
configuration; the others see the target masked. A webhook's signing secret is generated here,
returned to the Admin who creates (or rotates) it and readable by Admins, never written to the audit
log or to a delivery.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from accounts.authz import NotFound, Principal, authorize, can
from accounts.services.audit import audit_record
from core.errors import Conflict, InvalidInput
from orchestration.models import NotificationChannel, NotificationDelivery
from orchestration.selectors.projects import parse_id, sees_all_projects, visible_projects_q

Kind = NotificationChannel.Kind

MAX_NAME = 200
MAX_ADDRESSES = 20
MAX_URL = 2000
MAX_ROUTING_KEY = 64
# Name resolution has no timeout of its own; a save or a send waits this long at most.
RESOLVE_TIMEOUT_SECONDS = 5.0
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    Kind.EMAIL: ("addresses",),
    Kind.WEBHOOK: ("url",),
    Kind.SLACK: ("url",),
    Kind.PAGERDUTY: ("routing_key", "url"),
}
UPDATABLE_FIELDS = frozenset({"name", "config", "is_enabled", "rotate_secret"})


# --- A2: the target check -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A checked target: where to connect (one of ``addresses``) and what to call it (``host``)."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _bad_target(message: str, code: str = "invalid_target") -> InvalidInput:
    return InvalidInput(message, code=code, details={"config": {"url": [message]}})


_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="flowdeck-resolve")


def _resolve(host: str, port: int) -> list[str]:
    future = _resolver.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=RESOLVE_TIMEOUT_SECONDS)
    except concurrent.futures.TimeoutError:
        raise _bad_target(f"The host name {host} did not resolve in time; try again.", "target_unresolvable") from None
    except (socket.gaierror, UnicodeError, OSError):
        raise _bad_target(f"The host name {host} does not resolve.", "target_unresolvable") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _forbidden(address: str) -> str | None:
    """Why the server may not call this address, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # Most specific first: 0.0.0.0 and 127.0.0.1 are "private" too.
    for reason, hit in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                        ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                        ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if hit:
            return reason
    if not ip.is_global:  # shared address space (100.64/10) and the like
        return "non-public"
    return None


def check_target_url(url: Any) -> Target:
    """A2: the URL the server may call, or InvalidInput saying why not. http(s) only, a host, no
    credentials; every address the host resolves to must be public unless the operator setting
    ``FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS`` allows private ones. Checked when a channel is saved
    and again right before every send (DNS answers change); the send connects to an address
    checked here."""
    if not isinstance(url, str) or not url.strip():
        raise _bad_target("Give the target as an http(s) URL.", "invalid_url")
    if len(url) > MAX_URL:
        raise _bad_target(f"The URL is longer than {MAX_URL} characters.", "invalid_url")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise _bad_target("The URL is malformed.", "invalid_url") from None
    if parts.scheme not in ("http", "https"):
        raise _bad_target("Only http and https URLs can be notified.", "invalid_url")
    if parts.username is not None or parts.password is not None:
        raise _bad_target("Leave credentials out of the URL.", "invalid_url")
    host = parts.hostname
    if not host:
        raise _bad_target("The URL has no host.", "invalid_url")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not addresses:
        raise _bad_target(f"The host name {host} does not resolve.", "target_unresolvable")
    if not settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS:
        for address in addresses:
            reason = _forbidden(address)
            if reason:
                raise _bad_target(
                    f"{host} resolves to {address}, a {reason} address: notifications only go to public "
                    "addresses (an operator can allow private targets with FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS).",
                    "target_not_allowed",
                )
    return Target(scheme=parts.scheme, host=host, port=port, addresses=tuple(addresses))


# --- configuration ------------------------------------------------------------------------------


def _config_error(key: str, message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_config", details={"config": {key: [message]}})


def _validate_addresses(value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ADDRESSES:
        raise _config_error("addresses", f"Give 1 to {MAX_ADDRESSES} e-mail addresses as a list.")
    cleaned: list[str] = []
    for address in value:
        if not isinstance(address, str) or len(address) > 254:
            raise _config_error("addresses", "Each address must be an e-mail address.")
        try:
            validate_email(address.strip())
        except ValidationError:
            raise _config_error("addresses", f"{address!r} is not a valid e-mail address.") from None
        if address.strip().lower() not in {a.lower() for a in cleaned}:
            cleaned.append(address.strip())
    return cleaned


def _checked_url(value: Any) -> str:
    check_target_url(value)  # raises with details under config.url
    return str(value).strip()


def validate_config(kind: Any, config: Any) -> dict[str, Any]:
    """The channel's configuration, checked and normalised, or InvalidInput naming the field."""
    if kind not in Kind.values:
        raise InvalidInput(f"kind must be one of {', '.join(Kind.values)}.", code="invalid_kind",
                           details={"kind": ["Unknown kind."]})
    if not isinstance(config, dict):
        raise InvalidInput("config must be an object.", code="invalid_config", details={"config": ["Not an object."]})
    unknown = sorted(set(config) - set(CONFIG_KEYS[kind]))
    if unknown:
        raise InvalidInput(
            f"Unknown config field(s) for a {kind} channel: {', '.join(unknown)}.", code="invalid_config",
            details={"config": {key: ["Unknown field."] for key in unknown}},
        )
    if kind == Kind.EMAIL:
        return {"addresses": _validate_addresses(config.get("addresses"))}
    if kind in (Kind.WEBHOOK, Kind.SLACK):
        if "url" not in config:
            raise _config_error("url", "A url is required.")
        return {"url": _checked_url(config["url"])}
    key = config.get("routing_key")
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_ROUTING_KEY or not key.strip().isalnum():
        raise _config_error("routing_key", "routing_key must be the integration's key (letters and digits).")
    cleaned: dict[str, Any] = {"routing_key": key.strip()}
    if config.get("url") not in (None, ""):
        cleaned["url"] = _checked_url(config["url"])
    return cleaned


def _validate_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters.", details={"name": ["Invalid."]})
    return name.strip()


def target_url(channel: NotificationChannel) -> str:
    """The URL a send calls ("" for e-mail)."""
    if channel.kind == Kind.PAGERDUTY:
        return str(channel.config.get("url") or settings.FLOWDECK_PAGERDUTY_EVENTS_URL)
    return str(channel.config.get("url", ""))


def masked_url(url: str) -> str:
    """The URL with its path and query hidden (Slack and similar put the secret in the path):
    ``https://hooks.slack.com/…/****``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "****"
    if ":" in host:
        host = f"[{host}]"
    hidden = "/…/****" if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{hidden}"


def masked_target(channel: NotificationChannel) -> str:
    """What anyone in the workspace may see of where a channel goes."""
    if channel.kind == Kind.EMAIL:
        addresses = list(channel.config.get("addresses") or [])
        if not addresses:
            return ""
        local, _, domain = addresses[0].partition("@")
        more = f" (+{len(addresses) - 1} more)" if len(addresses) > 1 else ""
        return f"{local[:1]}***@{domain}{more}"
    if channel.kind == Kind.PAGERDUTY:
        return f"{masked_url(target_url(channel))} (routing key ****)"
    return masked_url(target_url(channel))


def channel_view(principal: Principal, channel: NotificationChannel) -> dict[str, Any]:
    """The channel as this principal may see it: configuration and secret for Admins only."""
    admin = can(principal, "notification_channel:manage", principal.workspace)
    return {
        "id": channel.pk,
        "name": channel.name,
        "kind": channel.kind,
        "target": masked_target(channel),
        "is_enabled": channel.is_enabled,
        "config": dict(channel.config) if admin else None,
        "secret": channel.secret if admin and channel.kind == Kind.WEBHOOK else None,
        "last_delivery_status": getattr(channel, "last_delivery_status", None),
        "created_by": channel.created_by,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }


# --- writes -------------------------------------------------------------------------------------


def _audit_data(channel: NotificationChannel, **extra: Any) -> dict[str, Any]:
    # Never the secret, the routing key or a URL's path: only what the masked target shows.
    return {"kind": channel.kind, "name": channel.name, "target": masked_target(channel), **extra}


def _authorize_manage(actor: Principal, channel: NotificationChannel) -> None:
    if channel.workspace_id != actor.workspace.pk:
        raise NotFound()
    authorize(actor, "notification_channel:manage", actor.workspace)


def _save(channel: NotificationChannel) -> None:
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:
        raise Conflict(f"A channel named '{channel.name}' already exists in this workspace.",
                       code="name_taken", details={"name": ["Already used."]}) from None


def notification_channel_create(actor: Principal, *, name: Any, kind: Any, config: Any,
                                is_enabled: bool = True) -> NotificationChannel:
    """A new channel (Admin). A webhook channel gets a fresh signing secret."""
    authorize(actor, "notification_channel:manage", actor.workspace)
    name = _validate_name(name)
    cleaned = validate_config(kind, config)
    channel = NotificationChannel(
        workspace=actor.workspace, name=name, kind=kind, config=cleaned, is_enabled=bool(is_enabled),
        secret=secrets.token_urlsafe(32) if kind == Kind.WEBHOOK else "", created_by=actor.label,
    )
    _save(channel)
    audit_record(workspace=actor.workspace, action="notification_channel.created", target=channel, actor=actor,
                 data=_audit_data(channel))
    return channel


def notification_channel_update(actor: Principal, channel: NotificationChannel, **changes: Any) -> NotificationChannel:
    """Rename, reconfigure, enable/disable a channel, or rotate a webhook's secret
    (``rotate_secret=True``). The kind cannot change: make a new channel."""
    _authorize_manage(actor, channel)
    unknown = sorted(set(changes) - UPDATABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"These fields cannot be changed: {', '.join(unknown)}.",
                           details={key: ["Cannot be changed."] for key in unknown})
    changed: list[str] = []
    if changes.get("name") is not None:
        name = _validate_name(changes["name"])
        if name != channel.name:
            channel.name = name
            changed.append("name")
    if changes.get("config") is not None:
        cleaned = validate_config(channel.kind, changes["config"])
        if cleaned != channel.config:
            channel.config = cleaned
            changed.append("config")
    if changes.get("is_enabled") is not None and bool(changes["is_enabled"]) != channel.is_enabled:
        channel.is_enabled = bool(changes["is_enabled"])
        changed.append("is_enabled")
    rotated = bool(changes.get("rotate_secret"))
    if rotated:
        if channel.kind != Kind.WEBHOOK:
            raise InvalidInput("Only webhook channels have a signing secret.",
                               details={"rotate_secret": ["Only for webhook channels."]})
        channel.secret = secrets.token_urlsafe(32)
        changed.append("secret")
    if not changed:
        return channel
    channel.updated_at = timezone.now()
    _save(channel)
    audit_record(workspace=actor.workspace, action="notification_channel.updated", target=channel, actor=actor,
                 data=_audit_data(channel, changed=changed, rotated_secret=rotated))
    return channel


def notification_channel_delete(actor: Principal, channel: NotificationChannel) -> None:
    """Delete a channel with its delivery log; policies stop notifying it."""
    _authorize_manage(actor, channel)
    data = _audit_data(channel)
    audit_record(workspace=actor.workspace, action="notification_channel.deleted", target=channel, actor=actor,
                 data=data)
    channel.delete()


# --- reads --------------------------------------------------------------------------------------


def channels_visible_to(principal: Principal) -> QuerySet[NotificationChannel]:
    """The workspace's channels by name, each with the status of its newest delivery."""
    authorize(principal, "notification_channel:read", principal.workspace)
    newest = (NotificationDelivery.objects.for_workspace(principal.workspace).filter(channel=OuterRef("pk"))
              .order_by("-created_at", "-id").values("status")[:1])
    return (NotificationChannel.objects.for_workspace(principal.workspace)
            .annotate(last_delivery_status=Subquery(newest)).order_by("name", "id"))


def access_channel(principal: Principal, channel_id: Any,
                   action: str = "notification_channel:read") -> NotificationChannel:
    """One channel, if the principal may do ``action``; a bad id, a missing channel and another
    workspace's are all NotFound."""
    channel = channels_visible_to(principal).filter(pk=parse_id(channel_id)).first()
    if channel is None:
        raise NotFound()
    authorize(principal, action, principal.workspace)
    return channel


def deliveries_visible_to(principal: Principal, *, channel_id: Any = None,
                          incident_id: Any = None) -> QuerySet[NotificationDelivery]:
    """The delivery log, newest first, with each delivery's attempts. Deliveries about incidents
    of restricted projects the principal cannot see are left out."""
    authorize(principal, "notification_channel:read", principal.workspace)
    deliveries = NotificationDelivery.objects.for_workspace(principal.workspace)
    if not sees_all_projects(principal):
        deliveries = deliveries.filter(
            Q(incident__isnull=True) | Q(incident__flow__isnull=True)
            | visible_projects_q(principal, "incident__flow__project")
        )
    if channel_id is not None:
        deliveries = deliveries.filter(channel_id=channel_id)
    if incident_id is not None:
        deliveries = deliveries.filter(incident_id=incident_id)
    return (deliveries.select_related("channel", "incident").prefetch_related("attempt_rows")
            .order_by("-created_at", "-id"))


def access_delivery(principal: Principal, delivery_id: Any) -> NotificationDelivery:
    delivery = deliveries_visible_to(principal).filter(pk=parse_id(delivery_id)).first()
    if delivery is None:
        raise NotFound()
    return delivery
