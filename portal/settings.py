"""Settings for Coasty Portal, read from the environment.

Every variable is optional: with none set, the portal runs on one machine with a SQLite file
and django-q2's ORM broker, against the bundled Coasty simulator. The variables that the contract
names (see README) switch it to PostgreSQL, Redis and real Coasty.
"""

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

# --- Core ---------------------------------------------------------------------------------------

# Off unless asked for: `make run` (bin/run) and the tests turn it on; production leaves it off.
DEBUG = env.bool("DEBUG", default=False)


def _development_secret(name: str, make) -> str:
    """A development-only secret kept in var/ (made once, shared by every local process)."""
    path = VAR_DIR / name
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:  # first process to get here writes it
        handle.write(make())
    return path.read_text().strip()


# manage.py commands that only read the code (never serve, sign or decrypt anything) run
# without a key, so a fresh checkout can `manage.py check` or `makemigrations --check`.
_KEYLESS_COMMANDS = frozenset({"check", "makemigrations", "showmigrations", "help", "version"})


def _keyless_command() -> bool:
    argv = sys.argv
    return (
        len(argv) > 1
        and Path(argv[0]).name == "manage.py"
        and argv[1] in _KEYLESS_COMMANDS
        and "--deploy" not in argv  # the deploy check must see the real settings
    )


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG and _keyless_command():
        SECRET_KEY = secrets.token_urlsafe(50)  # this process's alone, never stored or used
    elif not DEBUG:
        # A production process must never sign sessions with a value that ships in the source
        # or that it made up by itself.
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    else:
        SECRET_KEY = _development_secret("dev-secret-key", lambda: secrets.token_urlsafe(50))
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# Secrets at rest (portal/core/crypto.py): Fernet keys, newest first; the newest encrypts, all
# decrypt (`manage.py rotate_encryption_keys` moves stored secrets to the newest). Development
# makes one in var/; production without them falls back to a key derived from SECRET_KEY (the
# pre-rotation scheme) and `check --deploy` warns.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
if not FIELD_ENCRYPTION_KEYS and DEBUG:
    FIELD_ENCRYPTION_KEYS = [
        _development_secret("dev-field-encryption-key", lambda: Fernet.generate_key().decode())
    ]
# Keep the SECRET_KEY-derived key of old deployments as a decrypt-only fallback (until rotated).
FIELD_ENCRYPTION_SECRET_KEY_FALLBACK = env.bool(
    "FIELD_ENCRYPTION_SECRET_KEY_FALLBACK", default=True
)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# The base URL people and Coasty reach the portal on; the webhook URLs are built from it.
PORTAL_PUBLIC_URL = env.str("PORTAL_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
PORTAL_SERVED_OVER_HTTPS = urlsplit(PORTAL_PUBLIC_URL).scheme == "https"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",  # login lockout (portal/core/logins.py); before portal.core, whose admin tightens it
    "django_htmx",
    # Ours, lowest layer first (pyproject.toml's import-linter contract states the layers).
    "portal.core",
    "portal.teams",
    "portal.notifications",
    "billing",
    "runs",
    "schedules",
    "portal.site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (settings: Security)
    "portal.core.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.core.middleware.RequestSizeLimitMiddleware",  # 413 before anything reads the body
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.core.middleware.UserTimezoneMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: answers locked-out logins
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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
                "portal.site.context_processors.navigation",
                "billing.context_processors.wallet_banner",
            ],
        },
    },
]

FORM_RENDERER = "portal.core.forms.PortalFormRenderer"

# --- Data ---------------------------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["OPTIONS"] = {
        # IMMEDIATE takes the write lock when a transaction starts, so two processes that both
        # read-then-write wait for each other instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        # WAL lets pages read while the worker writes.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The ledger's covering index (amount_cents INCLUDEd for index-only sums) is a PostgreSQL
    # feature; SQLite keeps the plain index and ignores the extra column, which is fine.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
else:
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    _db["CONN_HEALTH_CHECKS"] = True
    # The hot paths' statements (runs.sql: the webhook intake) bind their values on the server
    # and are prepared once they have run this many times on a connection; Django's own queries
    # bind on the client and are never prepared. Behind a pooler in transaction mode that cannot
    # keep prepared statements, set DATABASE_PREPARE_THRESHOLD=off.
    _prepare = env.str("DATABASE_PREPARE_THRESHOLD", default="5").strip().lower()
    if _prepare not in ("", "off", "none") and not (_prepare.isascii() and _prepare.isdigit()):
        raise ImproperlyConfigured(
            f"DATABASE_PREPARE_THRESHOLD must be a whole number or 'off', not {_prepare!r}."
        )
    _db.setdefault("OPTIONS", {})["prepare_threshold"] = (
        None if _prepare in ("", "off", "none") else int(_prepare)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# django-q2. A task is killed after `timeout`; the broker hands an unacknowledged task to another
# worker after `retry`. retry > timeout, so a slow task is never run twice at once; every task is
# idempotent anyway, because a killed worker's task does run again.
Q_CLUSTER = {
    "name": "portal",
    "workers": env.int("Q_WORKERS", default=4),
    "timeout": 120,
    "retry": 150,
    "max_attempts": 5,
    "ack_failures": True,  # a failed task leaves the queue; its Failure row stays for the admin
    "save_limit": 1000,
    "catch_up": False,  # a worker that was down runs a missed schedule once, not once per miss
    "poll": 0.1,
    "label": "Tasks",
}
# What `manage.py worker` queues itself at this second of every minute (django-q2's own
# scheduler looks only every 30 s): the schedules tick, so occurrences launch on the minute.
WORKER_MINUTE_TASKS = env.list("WORKER_MINUTE_TASKS", default=["schedules.tasks.tick"])
WORKER_MINUTE_SECOND = env.float("WORKER_MINUTE_SECOND", default=1.0)
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- People -------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "portal.core.logins.LoginLockoutBackend",  # django-axes: refuses locked-out logins
    "django.contrib.auth.backends.ModelBackend",
]
# Login lockout and back-off (portal/core/logins.py): per account and per address alike.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOL_OFF_MINUTES = env.int("LOGIN_COOL_OFF_MINUTES", default=5)
# Failed logins are kept this long (admins read them; the back-off reads the last day), then
# purged daily.
LOGIN_FAILURE_LOG_DAYS = env.int("LOGIN_FAILURE_LOG_DAYS", default=30)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one alone locks
AXES_COOLOFF_TIME = "portal.core.logins.lockout_cool_off"
AXES_CLIENT_IP_CALLABLE = "portal.core.logins.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # one row per failure, listed in the admin
# Failures are logged with the username and address tried (operators need them to see an
# attack); the password is always masked.
AXES_SENSITIVE_PARAMETERS: list[str] = []
AXES_RESET_ON_SUCCESS = False  # a success from one address must not clear another's failures
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # filled by collectstatic for production
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Mail ---------------------------------------------------------------------------------------

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Coasty Portal <portal@localhost>")

# --- Security -----------------------------------------------------------------------------------

# HTTPS hardening follows the public URL: when people reach the portal over https, cookies are
# secure, http redirects, and HSTS is on. A loopback http deployment keeps working.
SECURE_SSL_REDIRECT = PORTAL_SERVED_OVER_HTTPS
SESSION_COOKIE_SECURE = PORTAL_SERVED_OVER_HTTPS
CSRF_COOKIE_SECURE = PORTAL_SERVED_OVER_HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if PORTAL_SERVED_OVER_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PORTAL_SERVED_OVER_HTTPS
SECURE_HSTS_PRELOAD = PORTAL_SERVED_OVER_HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain http
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[PORTAL_PUBLIC_URL])
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# No page runs inline script or eval: every script is one of our static files (htmx is configured
# for this in base.html; /api/docs/ is Swagger UI's split view, its set-up script a URL too).
# Inline styles stay allowed: templates set widths with style="" and the admin does too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Powerful browser features no page of the portal uses, switched off for every page.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), browsing-topics=()"
)

# --- Coasty -------------------------------------------------------------------------------------

COASTY_BASE_URL = env.str("COASTY_BASE_URL", default="http://127.0.0.1:8765").rstrip("/")
# The default key is a live-format key for the local simulator, which bills per step with it, so
# reconciliation has real numbers to compare. Real Coasty rejects it.
COASTY_API_KEY = env.str("COASTY_API_KEY", default="sk-coasty-live-local-simulator")
COASTY_CONNECT_TIMEOUT = env.float("COASTY_CONNECT_TIMEOUT", default=5.0)
COASTY_READ_TIMEOUT = env.float("COASTY_READ_TIMEOUT", default=30.0)

# --- Billing ------------------------------------------------------------------------------------

# Price of one completed agent step, in cents (1 Coasty credit = 1 cent). The simulator agrees.
COASTY_STEP_PRICES_CENTS = {"v1": 8, "v3": 5, "v4": 5, "v5": 5}
# The largest single top-up a billing admin can make ($10,000 by default): a typo guard.
BILLING_TOP_UP_MAX_CENTS = env.int("BILLING_TOP_UP_MAX_CENTS", default=1_000_000)
# How many held and spend accounts each team's holds are spread over (billing/models.py): the
# captures of concurrent runs of one team lock one of these instead of all queuing on one row.
BILLING_ACCOUNT_SHARDS = env.int("BILLING_ACCOUNT_SHARDS", default=64)
# A new team's low-balance alert level; billing admins change it per team.
BILLING_LOW_BALANCE_THRESHOLD_CENTS = env.int("BILLING_LOW_BALANCE_THRESHOLD_CENTS", default=500)
# Dotted path of a function(hold) -> billing.verdicts.UpstreamReport | None giving fresh
# figures from Coasty; the runs app provides it. Unset: reconcile the figures stored at settle.
BILLING_UPSTREAM_REPORTER = (
    env.str("BILLING_UPSTREAM_REPORTER", default="runs.reconciliation.upstream_report") or None
)
# Dotted path of a function(run ids) -> {run id: billing.ledger_groups.LedgerRun}: the wallet
# ledger's task, launcher and status of each run (the runs app's; billing cannot import runs).
BILLING_LEDGER_RUNS = "runs.selectors.runs_for_ledger"
# check_ledger's invariants that need an app above billing (billing cannot import them).
LEDGER_EXTRA_CHECKS = ["runs.invariants.run_money_problems"]
# reconcile_billing re-checks holds settled this recently, plus every open discrepancy.
BILLING_RECONCILE_WINDOW_HOURS = env.int("BILLING_RECONCILE_WINDOW_HOURS", default=24)

# Event following (runs/follow.py): how long one follower task follows before handing over, how
# many run streams it follows at once, and how many followers may run at once (each takes one
# worker process; the rest stay free to submit and settle).
RUNS_FOLLOW_BUDGET_SECONDS = env.float("RUNS_FOLLOW_BUDGET_SECONDS", default=50.0)
RUNS_FOLLOW_CAPACITY = env.int("RUNS_FOLLOW_CAPACITY", default=500)
RUNS_FOLLOWER_SLOTS = env.int("RUNS_FOLLOWER_SLOTS", default=max(1, Q_CLUSTER["workers"] // 2))
# Caps on what one upstream stream can make a follower hold and the database store: an SSE line
# or event over the stream caps is read past (not buffered) and recorded as oversize; an event's
# stored data over RUNS_EVENT_DATA_MAX_BYTES is replaced by a note of its size; one ingest batch
# holds at most RUNS_FOLLOW_BATCH_MAX_BYTES of event data.
RUNS_STREAM_MAX_LINE_BYTES = env.int("RUNS_STREAM_MAX_LINE_BYTES", default=512 * 1024)
RUNS_STREAM_MAX_EVENT_BYTES = env.int("RUNS_STREAM_MAX_EVENT_BYTES", default=256 * 1024)
RUNS_EVENT_DATA_MAX_BYTES = env.int("RUNS_EVENT_DATA_MAX_BYTES", default=64 * 1024)
RUNS_FOLLOW_BATCH_MAX_BYTES = env.int("RUNS_FOLLOW_BATCH_MAX_BYTES", default=4 * 1024 * 1024)

# Webhook intake (runs/services/webhooks.py): refused deliveries allowed per minute for one run
# and from one client address before further ones are answered 429 unread. Coasty's own signed
# deliveries never count. Counted in the cache: shared between processes once REDIS_URL is set.
WEBHOOK_REFUSALS_PER_RUN_PER_MINUTE = env.int("WEBHOOK_REFUSALS_PER_RUN_PER_MINUTE", default=10)
WEBHOOK_REFUSALS_PER_ADDRESS_PER_MINUTE = env.int(
    "WEBHOOK_REFUSALS_PER_ADDRESS_PER_MINUTE", default=30
)

# Schedules (schedules/): an occurrence more than this late when the tick reaches it counts as
# missed (the portal was down) and follows the schedule's catch-up policy; a schedule pauses
# itself after this many skipped or failed occurrences in a row; one tick works for at most this
# long before leaving the rest to the next tick; and no schedule's run may hold more than this.
SCHEDULES_LATE_AFTER_SECONDS = env.int("SCHEDULES_LATE_AFTER_SECONDS", default=300)
SCHEDULES_PAUSE_AFTER_FAILURES = env.int("SCHEDULES_PAUSE_AFTER_FAILURES", default=3)
SCHEDULES_TICK_BUDGET_SECONDS = env.float("SCHEDULES_TICK_BUDGET_SECONDS", default=50.0)
SCHEDULES_MAX_RUN_COST_CENTS = env.int("SCHEDULES_MAX_RUN_COST_CENTS", default=5_000)

# A launch waiting for a manager's approval is rejected as "expired" after this long.
RUNS_APPROVAL_EXPIRY_SECONDS = env.int("RUNS_APPROVAL_EXPIRY_SECONDS", default=24 * 3600)

# Convergence (runs/services/housekeeping.py): every run ends settled with its hold closed within
# a bound, whatever Coasty answers. A pending run older than RUNS_PENDING_MAX_AGE_SECONDS is
# adopted (Coasty has it under its key) or failed and released; no Idempotency-Key is sent once
# Coasty's retention (24 h) is near. A run Coasty no longer knows (GET 404) is settled on what was
# captured RUNS_LOST_UPSTREAM_AFTER_SECONDS after the first 404 (bound: 5 min); a run that has
# not ended RUNS_OVERDUE_CANCEL_AFTER_SECONDS past its deadline is cancelled upstream, and settled
# on what was captured RUNS_OVERDUE_SETTLE_AFTER_SECONDS past it (bound: 10 min). A run without a
# deadline has Coasty's ceiling, RUNS_DEFAULT_DEADLINE_SECONDS.
RUNS_PENDING_MAX_AGE_SECONDS = env.int("RUNS_PENDING_MAX_AGE_SECONDS", default=3600)
RUNS_COASTY_KEY_RETENTION_SECONDS = env.int("RUNS_COASTY_KEY_RETENTION_SECONDS", default=86_400)
# Past the age limit, how long Coasty's idempotency lookup is still asked while it cannot answer.
RUNS_PENDING_LOOKUP_GRACE_SECONDS = env.int("RUNS_PENDING_LOOKUP_GRACE_SECONDS", default=600)
RUNS_LOST_UPSTREAM_AFTER_SECONDS = env.int("RUNS_LOST_UPSTREAM_AFTER_SECONDS", default=120)
RUNS_OVERDUE_CANCEL_AFTER_SECONDS = env.int("RUNS_OVERDUE_CANCEL_AFTER_SECONDS", default=120)
RUNS_OVERDUE_SETTLE_AFTER_SECONDS = env.int("RUNS_OVERDUE_SETTLE_AFTER_SECONDS", default=420)
RUNS_DEFAULT_DEADLINE_SECONDS = env.int("RUNS_DEFAULT_DEADLINE_SECONDS", default=86_400)
# reconcile_billing: holds per batch, Coasty calls at once, and the time one job may take before it
# stores its cursor and hands over (under django-q2's task timeout).
BILLING_RECONCILE_BATCH = env.int("BILLING_RECONCILE_BATCH", default=200)
BILLING_RECONCILE_CONCURRENCY = env.int("BILLING_RECONCILE_CONCURRENCY", default=4)
BILLING_RECONCILE_BUDGET_SECONDS = env.float("BILLING_RECONCILE_BUDGET_SECONDS", default=60.0)

# --- REST API -----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    # A bearer token; else the login session, for reads only (the API docs' "Try it out").
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.core.rest.authentication.BearerTokenAuthentication",
        "portal.core.rest.authentication.SessionReadAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "portal.core.rest.scopes.TokenScopes",  # each view's scope_area (runs / billing)
    ],
    "DEFAULT_THROTTLE_CLASSES": ["portal.core.rest.throttling.TokenRateThrottle"],
    # Per person (all their tokens together). Counts live in the cache: per process until
    # REDIS_URL makes it shared.
    "DEFAULT_THROTTLE_RATES": {
        "api_read": env.str("API_THROTTLE_READ", default="600/min"),
        "api_write": env.str("API_THROTTLE_WRITE", default="60/min"),
    },
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.core.rest.parsers.JsonParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "portal.core.rest.negotiation.JsonOnly",
    "EXCEPTION_HANDLER": "portal.core.rest.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Idempotency-Key: how long a response is kept for replay, and how long a request in flight
# keeps its key before a retry may take it over (its process must have died by then).
API_IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
API_IDEMPOTENCY_LEASE_SECONDS = env.int("API_IDEMPOTENCY_LEASE_SECONDS", default=30)

SPECTACULAR_SETTINGS = {
    "TITLE": "Coasty Portal API",
    "DESCRIPTION": (
        "Everything a person does in the portal, for scripts: list teams, launch and follow "
        "runs, read wallets and ledgers, top up (billing admins).\n\n"
        "Authenticate with `Authorization: Bearer <token>` (a personal token from the Account "
        "page). Logged in to the portal, this page's reads (GET) work with your session; "
        "changes need a token (403 otherwise). "
        'Errors are `{"error": {"code", "message", "fields"?}}`. The two '
        "creating POSTs take an `Idempotency-Key`: the same key and body replay the first "
        "response for 24 h."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The docs page's assets are served from our own static files (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "runs.models.RunStatus",
        "CuaVersionEnum": "runs.models.CuaVersion",
        "OnAwaitingHumanEnum": "runs.models.OnAwaitingHuman",
        "RoleEnum": "portal.teams.models.Role",
        "TransferKindEnum": "billing.models.TransferKind",
    },
}
# `make bench` only: serve /bench/ok (a bare view, no database) and /bench/durable/<run>/ (verify
# and one INSERT: the durable minimum), the limits the webhook intake is
# measured against. Off everywhere else.
BENCH_ENDPOINTS = env.bool("PORTAL_BENCH_ENDPOINTS", default=False)

# --- Notifications ------------------------------------------------------------------------------

# Team endpoints may be http:// or private/loopback addresses only when this is on (development,
# `make run`, the tests); in production they must be public https:// URLs.
NOTIFY_ALLOW_PRIVATE_URLS = env.bool("NOTIFY_ALLOW_PRIVATE_URLS", default=False)
NOTIFY_DELIVERY_TIMEOUT_SECONDS = env.float("NOTIFY_DELIVERY_TIMEOUT_SECONDS", default=10.0)
# How long a worker holds a delivery it is sending: past it, the worker is taken for dead and
# another sends the delivery again (same webhook-id). Longer than any send can take.
NOTIFY_DELIVERY_LEASE_SECONDS = env.float(
    "NOTIFY_DELIVERY_LEASE_SECONDS", default=NOTIFY_DELIVERY_TIMEOUT_SECONDS + 50
)
# Seconds before retry n (1-based) of a delivery, each with up to ±20% jitter: 7 attempts over
# about 1 h 43 min, the first retry within 10 s.
NOTIFY_RETRY_DELAYS = (5, 30, 120, 600, 1800, 3600)
# Deliveries in a row that end `failed` before the endpoint is disabled and its managers told.
NOTIFY_DISABLE_AFTER_FAILED_DELIVERIES = env.int(
    "NOTIFY_DISABLE_AFTER_FAILED_DELIVERIES", default=3
)
# How long the previous secret keeps signing after a rotation.
NOTIFY_SECRET_OVERLAP_HOURS = 24

# --- Logging ------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # Failed logins and lockouts are WARNING; axes' INFO is a line per success and start.
        "axes": {"level": "WARNING"},
    },
}
