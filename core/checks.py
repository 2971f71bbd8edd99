"""The production security checklist (docs/operations.md, "Production security checklist"): its
rules live here and nowhere else, and are enforced three ways:

- at the start of every server process (``python -m config.serve``, ``python -m config.embedded``),
  Celery worker and Celery beat: :func:`refuse_to_start_if_unsafe` exits with one line per broken
  rule before anything is served or run;
- by Django's system checks (registered in ``core.apps``): ``manage.py migrate``, ``runserver`` and
  ``check`` stop on the same errors (:func:`startup_checks`);
- by ``manage.py check --deploy`` (:func:`deployment_checks`), which judges the settings as
  production would, whatever ``FLOWDECK_PRODUCTION`` says, and exits non-zero on any failure.

What is enforced at start depends on the mode:

- **embedded mode** (SQLite, ``FLOWDECK_PRODUCTION`` off; ``settings.EMBEDDED_MODE``): nothing.
  Its key is generated into ``var/secret_key`` when none is set (core/secret_key.py).
- **outside embedded mode** (PostgreSQL, or production): the ``SECRET_KEY`` rule (E001). The test
  suite is here too, with a random key of its own (tests/suite_env.py).
- **production** (``FLOWDECK_PRODUCTION`` on): every rule below (E001-E006).

Stripe and SMTP are not required: a deployment without billing or with e-mail to files passes.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from core.secret_key import MIN_SECRET_KEY_LENGTH, weakness

DOCS = "docs/operations.md, \"Production security checklist\""
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _secret_key() -> list[CheckMessage]:
    problem = weakness(settings.SECRET_KEY)
    if problem is None:
        return []
    return [Error(
        f"{problem}: anyone who knows the key can forge e-mail-verification and password-reset links.",
        hint=f"Set SECRET_KEY to a random value of {MIN_SECRET_KEY_LENGTH} or more characters, the same for "
             "every process (python3 -c 'import secrets; print(secrets.token_urlsafe(64))').",
        id="flowdeck.E001",
    )]


def _debug() -> list[CheckMessage]:
    if not settings.DEBUG:
        return []
    return [Error("DEBUG is on: error pages show settings, SQL and source code.",
                  hint="Unset DEBUG (or set DEBUG=false).", id="flowdeck.E002")]


def _allowed_hosts() -> list[CheckMessage]:
    hosts = list(settings.ALLOWED_HOSTS)
    if hosts and "*" not in hosts:
        return []
    return [Error(
        "ALLOWED_HOSTS is empty or holds '*': any Host header is believed, and links in e-mails are built "
        "from it.",
        hint="Set ALLOWED_HOSTS to the host names people reach Flowdeck at.", id="flowdeck.E003",
    )]


def _https() -> list[CheckMessage]:
    found: list[CheckMessage] = []
    missing = [name for name, on in (
        ("SESSION_COOKIE_SECURE", settings.SESSION_COOKIE_SECURE),
        ("CSRF_COOKIE_SECURE", settings.CSRF_COOKIE_SECURE),
        ("SECURE_HSTS_SECONDS", (settings.SECURE_HSTS_SECONDS or 0) > 0),
        ("SECURE_PROXY_SSL_HEADER", settings.SECURE_PROXY_SSL_HEADER),
    ) if not on]
    if missing:
        found.append(Error(
            f"{', '.join(missing)} off: cookies may travel over plain http and browsers are not told to "
            "insist on https.",
            hint="config/settings.py turns these on with FLOWDECK_PRODUCTION; do not override them.",
            id="flowdeck.E004",
        ))
    public = urlsplit(settings.PUBLIC_URL) if settings.PUBLIC_URL else None
    if public is not None and public.scheme != "https" and public.hostname not in LOOPBACK_HOSTS:
        found.append(Error(
            f"FLOWDECK_PUBLIC_URL is {settings.PUBLIC_URL}: production is served over https (secure cookies "
            "are not sent over http, and sessions and keys would cross the network in clear).",
            hint="Terminate TLS at the proxy or ingress and set FLOWDECK_PUBLIC_URL=https://…", id="flowdeck.E005",
        ))
    return found


def _proxies() -> list[CheckMessage]:
    # The proxies whose X-Forwarded-For / -Proto the server believes (config/serve.py).
    everyone = [p for p in settings.FLOWDECK_TRUSTED_PROXIES if p.strip() == "*" or _is_everything(p)]
    if not everyone:
        return []
    return [Error(
        f"Forwarded headers are trusted from every address ({', '.join(everyone)}): any client can claim "
        "any IP (per-IP rate limits, audit log addresses) and https.",
        hint="Set FLOWDECK_TRUSTED_PROXIES to the proxy's or ingress controller's addresses or CIDRs.",
        id="flowdeck.E006",
    )]


def _is_everything(value: str) -> bool:
    try:
        return ipaddress.ip_network(value.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


# Every rule of the checklist, in the order docs/operations.md lists them.
PRODUCTION_RULES = (_secret_key, _debug, _allowed_hosts, _https, _proxies)


def problems(*, production: bool, embedded: bool) -> list[CheckMessage]:
    """What the checklist finds wrong for a process in this mode."""
    if production:
        return [message for rule in PRODUCTION_RULES for message in rule()]
    if embedded:
        return []
    return _secret_key()


@register(Tags.security)
def startup_checks(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """The rules this process's mode enforces (module docstring)."""
    return problems(production=settings.PRODUCTION, embedded=settings.EMBEDDED_MODE)


@register(Tags.security, deploy=True)
def deployment_checks(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """``check --deploy``: every rule as in production (those already reported once only), and
    production itself."""
    reported = {message.id for message in startup_checks()}
    found = [m for m in problems(production=True, embedded=False) if m.id not in reported]
    if not settings.PRODUCTION:
        found.insert(0, Error(
            "FLOWDECK_PRODUCTION is off: cookies are not secure, HSTS is not sent and GraphQL introspection is on.",
            hint="Set FLOWDECK_PRODUCTION=true in a deployment.", id="flowdeck.E000",
        ))
    return found


def refuse_to_start_if_unsafe(process: str) -> None:
    """Exit (status 1) with one line per broken rule when this process may not start. Needs the
    settings only, not the app registry: the supervisor of config.serve checks before it starts a
    server process."""
    errors = [message for message in startup_checks() if message.is_serious()]
    if errors:
        raise SystemExit("\n".join(
            f"{process} refuses to start: {message.msg} {message.hint} [{message.id}; {DOCS}]" for message in errors
        ))
