"""Flowdeck settings: one module, every knob from the environment.

With no environment at all Flowdeck runs in *embedded* mode: SQLite, the in-memory channel layer,
the local-memory cache and the periodic services on an in-process loop. Setting ``DATABASE_URL``
and ``REDIS_URL`` switches to PostgreSQL and Redis (production and the test suite).
"""

import ipaddress
import os
from pathlib import Path
from urllib.parse import unquote

import environ
from django.core.exceptions import ImproperlyConfigured

from core.secret_key import INSECURE_DEFAULT_SECRET_KEY, embedded_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env("FLOWDECK_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
# Production settings turn on the hardening that would get in the way on a laptop.
PRODUCTION = env.bool("FLOWDECK_PRODUCTION", default=False)
# SECRET_KEY is set below, once the database (and with it embedded mode) is known.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
# Links in e-mails: this address when set; unset, the address the request came to (accounts/links.py).
PUBLIC_URL = env("FLOWDECK_PUBLIC_URL", default="").rstrip("/")
# Other origins trusted for CSRF and the browser socket. Same-origin requests need no entry, so by
# default only the public address is trusted (never a fixed port another local app may hold).
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[PUBLIC_URL] if PUBLIC_URL else [])

INSTALLED_APPS = [
    "core.admin_apps.FlowdeckAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "graphene_django",
    "guardian",
    "django_celery_beat",
    "django_vite",
    "allauth",
    "allauth.account",
    "allauth.headless",
    "allauth.mfa",
    "allauth.usersessions",
    "core",
    "accounts",
    "orchestration",
    "billing",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.security_headers.SecurityHeadersMiddleware",  # CSP, Permissions-Policy, no-store on secrets
    "core.middleware.StaticFilesMiddleware",  # ServeStatic's files, without an event loop per request
    "core.middleware.BodySizeLimitMiddleware",
    "core.middleware.JsonDepthLimitMiddleware",
    "core.text_guard.TextGuardMiddleware",  # NUL / lone surrogates: 400 before any view
    "core.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.LazyMessageMiddleware",  # Django's, storage built on first use
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'flowdeck.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
DATABASES["default"]["CONN_MAX_AGE"] = 0
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
IS_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# Embedded mode: SQLite and not FLOWDECK_PRODUCTION, one process on one machine. Only there may
# SECRET_KEY be left unset: a random key is generated once into var/secret_key (0600) and reused.
# Everywhere else (PostgreSQL, or production) an unset, default or short key stops every server
# process, worker and beat at start (core/checks.py; docs/operations.md, "Production security
# checklist"). The test suite sets a random key of its own (tests/suite_env.py).
EMBEDDED_MODE = IS_SQLITE and not PRODUCTION
SECRET_KEY = env("SECRET_KEY", default="") or (
    embedded_secret_key(VAR_DIR) if EMBEDDED_MODE else INSECURE_DEFAULT_SECRET_KEY
)
# Threads that serve HTTP in each server process: a bounded pool, reused from request to request
# (config/asgi.py; docs/operations.md, "Serving"). SQLite runs one write transaction at a time, and
# every request is one (ATOMIC_REQUESTS), so a few threads there are enough.
FLOWDECK_WEB_THREADS = int(env("FLOWDECK_WEB_THREADS", default="") or (4 if IS_SQLITE else 8))
# Of those threads, how many run a request at once; the others wait their turn in order of arrival
# (config/wsgi_bridge.py). A process runs Python on one core at a time (the GIL), and a request here
# is mostly that CPU with short waits on the database: a few at once keep the core busy, while more
# only make them take the GIL from one another, which costs CPU and stretches the slowest requests
# (docs/performance.md, "Tenth round"). A response that streams leaves its place while it is sent, so
# a slow download holds a thread but not a place. Raise it when the database is far away (each
# request waits on about seven round trips to it).
_web_active = env("FLOWDECK_WEB_ACTIVE", default="") or "3"
if not _web_active.isdigit() or int(_web_active) < 1:
    raise ImproperlyConfigured(f"FLOWDECK_WEB_ACTIVE must be a whole number of 1 or more, not {_web_active!r}.")
FLOWDECK_WEB_ACTIVE = min(FLOWDECK_WEB_THREADS, int(_web_active))
# Threads of a server process that use the database besides those: the SLA trigger, the web-tier
# beat, the websocket consumers' database thread and (embedded) the periodic loop.
BACKGROUND_DB_THREADS = 4
# The agents' plain POSTs skip DRF's dispatch (orchestration/api/agent_lane.py); off: every request
# goes through the DRF views, as before.
FLOWDECK_AGENT_LANE = env.bool("FLOWDECK_AGENT_LANE", default=True)
# A database that cannot be reached must fail a request within seconds, not hang it (G2): the
# request then answers 503 with Retry-After (core.middleware.DatabaseUnavailableMiddleware).
DATABASE_RETRY_AFTER_SECONDS = env.int("DATABASE_RETRY_AFTER_SECONDS", default=5)
if IS_POSTGRES:
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=2)
    )
    # Check a pooled connection before handing it out: after a database restart every pooled
    # connection is dead, and without the check each would fail one request. The check asks the
    # server only when the connection's socket suggests it died (config/postgresql).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_HEALTH_CHECKS", default=True)
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    # Parameters bound by the server, and a statement that a connection has run twice prepared:
    # PostgreSQL then parses and plans the hot path's statements once per pooled connection instead
    # of once per request (docs/performance.md, "Fourth round": its CPU per request fell by 40 %).
    # Behind a transaction-pooling PgBouncer older than 1.21 set DATABASE_PREPARE_THRESHOLD to
    # nothing, which never prepares (docs/operations.md).
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = env.bool("DATABASE_SERVER_SIDE_BINDING", default=True)
    _prepare_threshold = env("DATABASE_PREPARE_THRESHOLD", default="2")
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = int(_prepare_threshold) if _prepare_threshold else None
if IS_POSTGRES and env.bool("DATABASE_POOL", default=True):
    # Opening a PostgreSQL connection per request costs more than the request, and Django's docs
    # advise a pool rather than persistent connections under ASGI. Row-level-security settings are
    # transaction-local, so nothing leaks from one pooled use to the next.
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
        # One connection for every thread that can use one at once, so that no request waits for
        # a connection (docs/performance.md, "Wall time").
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=FLOWDECK_WEB_THREADS + BACKGROUND_DB_THREADS),
        # How long a request waits for a connection before it answers 503 (G2).
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=2.0),
        # psycopg_pool retries a lost connection with a backoff that doubles up to this long; a
        # short give-up lets the next request try afresh, so the pool reconnects within seconds of
        # the database coming back instead of after a backoff as long as the outage.
        "reconnect_timeout": env.float("DATABASE_POOL_RECONNECT_TIMEOUT", default=5.0),
    }
if IS_SQLITE:
    # WAL + immediate transactions + a busy timeout: concurrent writers queue instead of
    # failing with "database is locked" when a reader upgrades to a writer; the threads of one
    # process queue on a lock of their own, not in SQLite's sleeping busy handler (config/sqlite).
    DATABASES["default"]["ENGINE"] = "config.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # The serving threads are few and reused, so each keeps its connection (and skips opening the
    # file and the PRAGMAs on every request).
    DATABASES["default"]["CONN_MAX_AGE"] = None
# Row-level security is a PostgreSQL feature; the app role it applies to is named here.
RLS_APP_ROLE = env("FLOWDECK_DB_APP_ROLE", default="flowdeck_app")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channels, celery -------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("FLOWDECK_CACHE_PREFIX", default="fd"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 defaults socket_timeout to 5 s, the same as channels-redis's blocking
            # BZPOPMIN: every idle socket's receive would time out and drop the connection
            # (django/channels_redis#422). Reads must outlast the 5 s pop; connects fail fast (G3).
            # It also caps a pool at 100 connections and fails beyond: 100 sockets connecting at
            # once each need one for their group_add.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 2,
                           "max_connections": env.int("FLOWDECK_CHANNEL_MAX_CONNECTIONS", default=1000)}],
                "prefix": env("FLOWDECK_CHANNEL_PREFIX", default="fd"),
                # Messages queued for one process's live hub before more are dropped (and its
                # sockets told to resync, core.live.hub). channels-redis's 100 is one burst of a
                # bulk action; a process's hub carries every event its sockets listen to.
                "capacity": env.int("FLOWDECK_CHANNEL_CAPACITY", default=1000),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Auth ---------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if env.bool("FLOWDECK_FAST_PASSWORD_HASHER", default=False):
    # Tests only: argon2 is deliberately slow.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

ACCOUNT_ADAPTER = "accounts.auth_adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.SignupForm"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Flowdeck] "
ACCOUNT_RATE_LIMITS = {
    "signup": env("RATE_LIMIT_SIGNUP", default="20/m/ip"),
    "login": env("RATE_LIMIT_LOGIN", default="30/m/ip"),
    "login_failed": env("RATE_LIMIT_LOGIN_FAILED", default="10/m/ip,5/5m/key"),
    "reset_password": env("RATE_LIMIT_RESET", default="20/m/ip,5/m/key"),
    "confirm_email": "1/3m/key",
}
# Our own atomic counters (core.ratelimit) guard login attempts per account and per IP.
LOGIN_ATTEMPT_LIMIT_PER_ACCOUNT = env.int("LOGIN_ATTEMPT_LIMIT_PER_ACCOUNT", default=10)
LOGIN_ATTEMPT_LIMIT_PER_IP = env.int("LOGIN_ATTEMPT_LIMIT_PER_IP", default=60)
LOGIN_ATTEMPT_WINDOW_SECONDS = env.int("LOGIN_ATTEMPT_WINDOW_SECONDS", default=300)
INVITATION_ACCEPT_LIMIT_PER_IP = env.int("INVITATION_ACCEPT_LIMIT_PER_IP", default=30)
API_KEY_FAILURE_LIMIT_PER_IP = env.int("API_KEY_FAILURE_LIMIT_PER_IP", default=100)
HEADLESS_ONLY = True
HEADLESS_CLIENTS = ("browser", "app")
HEADLESS_FRONTEND_URLS = {
    "account_confirm_email": "/account/verify-email/{key}",
    "account_reset_password": "/account/password/reset",
    "account_reset_password_from_key": "/account/password/reset/key/{key}",
    "account_signup": "/account/signup",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
USERSESSIONS_TRACK_ACTIVITY = False
LOGIN_URL = "/account/login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "core.views.csrf_failure"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
# The proxies whose X-Forwarded-For / -Proto the server believes (addresses or CIDRs; config/serve.py):
# the client is the right-most address in X-Forwarded-For that is not one of them. "*" is refused in
# production. Unset, uvicorn's own FORWARDED_ALLOW_IPS is read (docs/operations.md, "Proxies").
FLOWDECK_TRUSTED_PROXIES = env.list("FLOWDECK_TRUSTED_PROXIES",
                                    default=env.list("FORWARDED_ALLOW_IPS", default=["127.0.0.1", "::1"]))

# --- Email --------------------------------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Flowdeck <no-reply@flowdeck.local>")

# --- SLA alert notifications --------------------------------------------------------------------
# A2: notification targets (webhook, Slack, PagerDuty URLs) may not resolve to loopback, private,
# link-local, reserved, multicast or unspecified addresses unless this is on. Embedded mode (no
# REDIS_URL) runs on a laptop next to its receivers, so it allows them by default; production not.
FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = env.bool("FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS", default=not REDIS_URL)
# Links in notifications point here (the web app's public address).
FLOWDECK_BASE_URL = env("FLOWDECK_BASE_URL", default=PUBLIC_URL or "http://127.0.0.1:8000").rstrip("/")
FLOWDECK_PAGERDUTY_EVENTS_URL = env("FLOWDECK_PAGERDUTY_EVENTS_URL", default="https://events.pagerduty.com/v2/enqueue")

# --- Billing ------------------------------------------------------------------------------------
# Plans, run and seat quotas and Stripe (billing/). Off unless an operator turns it on: embedded and
# self-hosted installations run without limits, keeping logs LOG_RETENTION_DAYS_UNBILLED days.
FLOWDECK_BILLING = env.bool("FLOWDECK_BILLING", default=False)
LOG_RETENTION_DAYS_UNBILLED = env.int("LOG_RETENTION_DAYS", default=7)
# Stripe (docs/operations.md, "Billing"): keys from the environment only. Two webhook secrets may be
# given while one is rotated. STRIPE_API_BASE points the library elsewhere (the tests' fake Stripe).
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRETS = env.list("STRIPE_WEBHOOK_SECRETS", default=[])
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
# A subscription past due keeps its paid limits this long, then Free's apply (nothing is deleted).
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=7)

# --- APIs ---------------------------------------------------------------------------------------
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Deeper JSON bodies are refused with 400 before they are parsed (core.middleware).
MAX_JSON_DEPTH = env.int("MAX_JSON_DEPTH", default=100)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiKeyAuthentication",
        "accounts.api.authentication.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.FlowdeckContentNegotiation",
    # drf-spectacular's, plus the error responses of each operation (core/openapi.py).
    "DEFAULT_SCHEMA_CLASS": "core.openapi.FlowdeckAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Flowdeck API",
    "DESCRIPTION": "REST API for agents, the SDK and integrators.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Serve Swagger UI from our own static files: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Swagger UI's "Authorize" keeps the API key across reloads; session requests from the docs page
    # carry the CSRF token on their own.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": True},
    # The security schemes (an API key as a Bearer token, the browser session's cookie) are declared
    # beside the authentication classes, in accounts/api/authentication.py.
    # One name per choice set: the same states, roles and kinds are used by many serializers.
    "ENUM_NAME_OVERRIDES": {
        "StateTypeEnum": "orchestration.models.StateType",
        "StateTypeValueEnum": "orchestration.models.StateType.values",
        "AgentTypeEnum": ["process", "docker", "kubernetes"],
        "RoleEnum": "accounts.models.Role",
        "MemberRoleEnum": "accounts.api.serializers.HUMAN_ROLE_CHOICES",
        "ServiceAccountRoleEnum": ["admin", "developer", "viewer", "agent"],
        "ApiKeyKindEnum": "accounts.models.ApiKey.Kind",
        "ScheduleKindEnum": ["interval", "cron", "rrule"],
    },
}
GRAPHENE = {
    "SCHEMA": "config.schema.schema",
    "MIDDLEWARE": [],
    "RELAY_CONNECTION_MAX_LIMIT": 100,
}
GRAPHQL_MAX_DEPTH = env.int("GRAPHQL_MAX_DEPTH", default=10)
GRAPHQL_MAX_COST = env.int("GRAPHQL_MAX_COST", default=2000)
GRAPHQL_MAX_COST_ANONYMOUS = env.int("GRAPHQL_MAX_COST_ANONYMOUS", default=100)
GRAPHQL_INTROSPECTION = env.bool("GRAPHQL_INTROSPECTION", default=not PRODUCTION)

# --- Static files and the web app ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
DJANGO_VITE = {
    "default": {
        "dev_mode": env.bool("VITE_DEV_MODE", default=False),
        "manifest_path": BASE_DIR / "frontend" / "static" / "frontend" / "dist" / "manifest.json",
        "static_url_prefix": "frontend/dist",
    }
}
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Guardian: no anonymous user row; object permissions are only ever granted explicitly.
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

# Embedded mode runs the periodic services on an in-process loop.
FLOWDECK_INPROCESS_PERIODIC = env.bool("FLOWDECK_INPROCESS_PERIODIC", default=not REDIS_URL)
# Every server process stamps "the web tier is serving" each second, so the reaper never reads a
# web outage as dead agents (orchestration/services/web_tier.py). Off only in the test process,
# whose in-process ASGI apps are not a web tier (its server subprocesses keep it on).
FLOWDECK_WEB_TIER_BEAT = env.bool("FLOWDECK_WEB_TIER_BEAT", default=True)
# Server processes per host or container (config/serve.py). Several need what crosses processes
# (Redis for the channel layer and the cache, Celery beat for the periodic services) and a
# database that takes concurrent writers: one by default in embedded mode, else one per CPU, less
# one when PostgreSQL runs on this host (localhost or a Unix socket): each process keeps a core
# busy, and every request's round trips then wait for PostgreSQL to get one (on 2 cores, two
# processes gave a p99 of 240-260 ms where one gave 77-104 ms, for less throughput:
# docs/performance.md, "Ninth round" and "Tenth round"). Unset or empty: the default (compose
# passes an empty value through).
def _on_this_host(host: str) -> bool:
    """A database host that is this machine: none or a directory (a Unix socket), localhost, or a
    loopback address."""
    host = unquote(host or "")
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DATABASE_ON_THIS_HOST = IS_POSTGRES and _on_this_host(DATABASES["default"].get("HOST", ""))
FLOWDECK_WEB_WORKERS = int(
    env("FLOWDECK_WEB_WORKERS", default="")
    or (1 if not REDIS_URL or FLOWDECK_INPROCESS_PERIODIC or IS_SQLITE
        else max(1, len(os.sched_getaffinity(0)) - DATABASE_ON_THIS_HOST))
)
# API key last-used timestamps are written at most this often (B2).
API_KEY_LAST_USED_RESOLUTION_SECONDS = env.int("API_KEY_LAST_USED_RESOLUTION_SECONDS", default=300)
INVITATION_TTL_DAYS = 7

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# Verified API-key cache (accounts/key_cache.py)
# A key verified against the database is trusted in process for this many seconds (0 turns the
# cache off). Any change of access in its workspace (revocation, role, membership, deletion)
# invalidates it at once in every process through a per-workspace generation counter, moved in the
# database in the same transaction as the change.
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=30)
API_KEY_CACHE_SIZE = env.int("API_KEY_CACHE_SIZE", default=10_000)
