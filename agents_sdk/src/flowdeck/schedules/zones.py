"""Time zones for schedules: naming them as the server does (IANA names) and resolving local wall-clock
times to instants exactly as the Flowdeck server's schedule maths does around DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_ZONE = ZoneInfo("UTC")


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone called ``name`` (e.g. ``"Europe/Paris"``), or a ValueError that says so."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("A schedule's time zone must be an IANA name such as 'Europe/Paris' or 'UTC'.")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"'{name}' is not a known IANA time zone (e.g. 'Europe/Paris', 'UTC').") from None


def zone_of(value: tzinfo | str) -> ZoneInfo:
    """An IANA zone for a ``timezone=`` argument or for the tzinfo of an aware datetime.

    Accepts zone names, :class:`zoneinfo.ZoneInfo` (and subclasses such as pendulum's), objects with a
    ``zone`` or ``name`` attribute holding an IANA name (pytz, pendulum 2), and fixed UTC offsets of
    whole hours (mapped to ``Etc/GMT±h``, which have no DST).
    """
    if isinstance(value, str):
        return zone_named(value)
    if isinstance(value, ZoneInfo):
        return value if type(value) is ZoneInfo else zone_named(value.key)
    for attribute in ("zone", "name"):
        name = getattr(value, attribute, None)
        if isinstance(name, str) and "/" in name or name == "UTC":
            return zone_named(name)
    offset = value.utcoffset(None)
    if offset is not None and value.dst(None) in (None, timedelta(0)):
        if offset == timedelta(0):
            return UTC_ZONE
        hours, rest = divmod(offset, timedelta(hours=1))
        if not rest:
            # POSIX-style names: Etc/GMT-2 is two hours *ahead* of UTC.
            return zone_named(f"Etc/GMT{-hours:+d}")
    raise ValueError(f"Cannot tell the IANA time zone of {value!r}: give the date with a zoneinfo.ZoneInfo "
                     "(e.g. ZoneInfo('Europe/Paris')) or pass timezone='Europe/Paris'.")


def zone_name(zone: ZoneInfo) -> str:
    """The IANA name the server stores for ``zone``."""
    return zone.key


def local_naive(moment: datetime, zone: ZoneInfo) -> datetime:
    """The wall-clock time shown in ``zone`` at the instant ``moment``, without tzinfo."""
    return moment.astimezone(zone).replace(tzinfo=None)


def resolve_skipping_gaps(naive: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a local wall time: None when it does not exist (the spring-forward gap),
    its first occurrence when it is ambiguous (fall back). Cron times are resolved so."""
    instant = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if local_naive(instant, zone) != naive:
        return None
    return instant


def resolve_shifting_gaps(naive: datetime, zone: ZoneInfo) -> datetime:
    """Like :func:`resolve_skipping_gaps`, but a local time inside a gap moves forward by the gap
    (PEP 495 ``fold=0``). Whole-day intervals are resolved so."""
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def aware(value: datetime, zone: ZoneInfo) -> datetime:
    """``value`` as an aware datetime: a naive one is read as wall-clock time in ``zone``."""
    if not isinstance(value, datetime):
        raise TypeError(f"Expected a datetime, got {type(value).__name__}.")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=zone, fold=0)
    return value
