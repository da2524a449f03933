"""igris settings: one file, driven by environment variables (README lists every one).

Development defaults make `make run` work with nothing set (SQLite in var/, in-process hot state,
Celery eager). Production (`IGRIS_ENV=production`) has no defaults for secrets.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
from pathlib import Path

import dj_database_url

from governance.ssrf import parse_networks
from igris_project.env import EnvError, env_bool, env_int, env_list, env_str
from igris_project.forwarded import TrustedProxyError, parse_trusted

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("IGRIS_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Under the test runner the defaults change: env "test" and a hot-state namespace of its own.
RUNNING_TESTS = "pytest" in sys.modules
IGRIS_ENV = env_str("IGRIS_ENV", "test" if RUNNING_TESTS else "development")
if IGRIS_ENV not in {"development", "production", "test"}:
    raise EnvError(f"IGRIS_ENV={IGRIS_ENV!r} must be development, production or test")
PRODUCTION = IGRIS_ENV == "production"
DEBUG = env_bool("DEBUG", not PRODUCTION)


def _dev_secret() -> str:
    # A per-checkout random key, so a development instance never runs on a published constant.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") if PRODUCTION else env_str("SECRET_KEY", _dev_secret())

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise EnvError("environment variable ALLOWED_HOSTS is required in production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Base of every URL igris hands out (proxy URLs, the proxy's 401 challenge, OAuth metadata,
# invitation links). Empty: the request's own host, already checked against ALLOWED_HOSTS
# (governance/public_url.py). `make run` and `make run-prod` default it to the address they
# serve, so no port is written down here.
IGRIS_PUBLIC_URL = env_str("IGRIS_PUBLIC_URL", "").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.google",
    "allauth.headless",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "governance",
    "compliance",
    "billing",
    "proxy",
    # The wiring is an app too, for its management commands (igris_run, igris_prod,
    # run_demo_upstream): the commands that start processes belong to no one domain app.
    "igris_project",
]

MIDDLEWARE = [
    # First, so it sees every answer under /api/ and turns error pages into problem documents.
    "governance.api.middleware.ApiProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "governance.middleware.CurrentOrganizationMiddleware",
    "igris_project.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "igris_project.urls"
ASGI_APPLICATION = "igris_project.asgi.application"
WSGI_APPLICATION = None

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
                "governance.context_processors.console",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
        "DATABASE_POOL", PRODUCTION
    ):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_MAX", 10),
        }
else:
    if PRODUCTION:
        raise EnvError("environment variable DATABASE_URL is required in production")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "igris.sqlite3"),
            # WAL lets the console read while the embedded audit writer commits; IMMEDIATE
            # transactions avoid "database is locked" upgrades under concurrent writers.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Hot state and cache -----------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if PRODUCTION and not REDIS_URL:
    raise EnvError("environment variable REDIS_URL is required in production")
IGRIS_HOTSTATE_PREFIX = env_str(
    "IGRIS_HOTSTATE_PREFIX", f"igris-test-{secrets.token_hex(4)}:" if RUNNING_TESTS else "igris:"
)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": IGRIS_HOTSTATE_PREFIX + "cache",
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth ------------------------------------------------------------------------------------
AUTH_USER_MODEL = "governance.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "account_login"

SESSION_COOKIE_NAME = "igris.session_token"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 24 * 14)
# Under /api/ a CSRF failure is a problem document, elsewhere Django's page.
CSRF_FAILURE_VIEW = "governance.api.errors.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# X-Forwarded-* are believed only from these peers (igris_project/forwarded.py): addresses or
# CIDR blocks, or "*" where igris is reachable only through the proxy. IGRIS_TRUSTED_PROXY=true
# is the older spelling of "*".
IGRIS_TRUSTED_PROXIES = env_str(
    "IGRIS_TRUSTED_PROXIES", "*" if env_bool("IGRIS_TRUSTED_PROXY", False) else ""
)
try:
    parse_trusted(IGRIS_TRUSTED_PROXIES)
except TrustedProxyError as exc:
    raise EnvError(str(exc)) from None
IGRIS_TRUSTED_PROXY = bool(IGRIS_TRUSTED_PROXIES.strip())
if IGRIS_TRUSTED_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

# django-allauth: e-mail login, mandatory verification, rate limits on auth endpoints.
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[igris] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
ACCOUNT_RATE_LIMITS: dict[str, str] | bool = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
}
if env_bool("IGRIS_DISABLE_AUTH_RATE_LIMITS", False):
    ACCOUNT_RATE_LIMITS = False
HEADLESS_ONLY = False
HEADLESS_SERVE_SPECIFICATION = True
HEADLESS_FRONTEND_URLS = {
    "account_confirm_email": "/accounts/confirm-email/{key}/",
    "account_reset_password_from_key": "/accounts/password/reset/key/{key}/",
    "account_signup": "/accounts/signup/",
}
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_PROVIDERS: dict[str, dict] = {}
_GITHUB_ID = env_str("GITHUB_CLIENT_ID", "")
if _GITHUB_ID:
    SOCIALACCOUNT_PROVIDERS["github"] = {
        "APPS": [{"client_id": _GITHUB_ID, "secret": env_str("GITHUB_CLIENT_SECRET"), "key": ""}],
        "SCOPE": ["user:email"],
    }
_GOOGLE_ID = env_str("GOOGLE_CLIENT_ID", "")
if _GOOGLE_ID:
    SOCIALACCOUNT_PROVIDERS["google"] = {
        "APPS": [{"client_id": _GOOGLE_ID, "secret": env_str("GOOGLE_CLIENT_SECRET"), "key": ""}],
        "SCOPE": ["profile", "email"],
        "AUTH_PARAMS": {"access_type": "online"},
    }

# --- E-mail ----------------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "igris <no-reply@igris.local>")
EMAIL_HOST = env_str("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    # Development: verification and invitation mails are printed to the console.
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"


# --- Secrets at rest ---------------------------------------------------------------------------
def _derive_key(secret: str) -> str:
    return base64.urlsafe_b64encode(
        hashlib.sha256(("igris-enc:" + secret).encode()).digest()
    ).decode()


# 32-byte AES-256-GCM key, url-safe base64. Production must set its own (and keep it stable).
IGRIS_ENCRYPTION_KEY = (
    env_str("IGRIS_ENCRYPTION_KEY")
    if PRODUCTION
    else env_str("IGRIS_ENCRYPTION_KEY", _derive_key(SECRET_KEY))
)

# Seed of the Ed25519 key that signs audit checkpoints; keep it stable for the life of the audit
# log (rotating it orphans earlier checkpoints). Development derives it from SECRET_KEY.
IGRIS_AUDIT_SIGNING_KEY = (
    env_str("IGRIS_AUDIT_SIGNING_KEY")
    if PRODUCTION
    else env_str("IGRIS_AUDIT_SIGNING_KEY", SECRET_KEY)
)

# --- REST API --------------------------------------------------------------------------------
# Largest request body under /api/ (REST API, allauth's headless API, ingestion): larger gets 413
# problem+json (governance/api/middleware.py). Django's own limit is the same number, so no body
# is refused by Django's HTML 400 instead. 5 MiB, the documented ingestion limit, is the default.
IGRIS_API_MAX_BODY_BYTES = env_int("IGRIS_API_MAX_BODY_BYTES", 5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = IGRIS_API_MAX_BODY_BYTES
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.drf.ApiKeyAuthentication",
        "governance.drf.ConsoleSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "governance.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "governance.api.errors.exception_handler",
    # Requests per minute per API key (or console user): governance/api/throttling.py.
    "DEFAULT_THROTTLE_RATES": {"api": f"{env_int('IGRIS_API_RATE_PER_MIN', 1200)}/min"},
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "igris API",
    "DESCRIPTION": "Governance of MCP agents: servers, tools, policies, sessions, anomalies and "
    "the audit log of one organisation. Authenticate with 'Authorization: Bearer ig_…'; errors "
    "are application/problem+json with a stable `code`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the sidecar package's static files: nothing is loaded from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "governance.api.schema.strict_request_bodies",
    ],
    "ENUM_NAME_OVERRIDES": {
        "PostureEnum": "governance.models.Posture",
        "SessionStateEnum": "governance.models.SessionState",
        "ToolStateEnum": "governance.models.ToolState",
    },
    # No Swagger UI or ReDoc view: both load their assets from a CDN unless
    # drf-spectacular-sidecar is installed; /api/v1/docs/ is rendered locally instead.
}

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not bool(REDIS_URL or env_str("CELERY_BROKER_URL", ""))
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = env_str("IGRIS_CELERY_QUEUE", "igris")
# Periodic work (compliance/tasks.py, governance/tasks.py), run by `celery worker --beat`.
IGRIS_CHECKPOINT_INTERVAL_S = env_int("IGRIS_CHECKPOINT_INTERVAL_S", 3600)
IGRIS_CHAIN_VERIFY_INTERVAL_S = env_int("IGRIS_CHAIN_VERIFY_INTERVAL_S", 24 * 3600)
CELERY_BEAT_SCHEDULE = {
    "sign-audit-checkpoints": {
        "task": "compliance.sign_checkpoints",
        "schedule": float(IGRIS_CHECKPOINT_INTERVAL_S),
    },
    "verify-audit-chains": {
        "task": "compliance.verify_chains",
        "schedule": float(IGRIS_CHAIN_VERIFY_INTERVAL_S),
    },
    "close-idle-sessions": {"task": "governance.close_idle_sessions", "schedule": 300.0},
}

# --- igris behaviour -----------------------------------------------------------------------------
IGRIS_KEY_CACHE_TTL_S = env_int("IGRIS_KEY_CACHE_TTL_S", 30)
# Failed API key authentications allowed per minute from one client address (brute force):
# over it, the proxy, the REST API and ingestion answer 429 (governance/keys.py, BadKeyGuard).
IGRIS_BAD_KEY_RATE_PER_MIN = env_int("IGRIS_BAD_KEY_RATE_PER_MIN", 20)
IGRIS_INVITATION_DAYS = env_int("IGRIS_INVITATION_DAYS", 7)
# Fewest days an organisation may keep its audit events (governance.models.Organization): the EU
# AI Act (Regulation 2024/1689) Art. 19(1) and 26(6) keep the logs of a high-risk AI system for at
# least six months, 183 days. Purging by age is not implemented yet; this only validates.
IGRIS_AUDIT_RETENTION_MIN_DAYS = env_int("IGRIS_AUDIT_RETENTION_MIN_DAYS", 183)
if not 1 <= IGRIS_AUDIT_RETENTION_MIN_DAYS <= 36_500:
    raise EnvError(
        f"IGRIS_AUDIT_RETENTION_MIN_DAYS={IGRIS_AUDIT_RETENTION_MIN_DAYS} must be 1 to 36500"
    )
# Most rules one policy may hold (draft, publish, rollback refuse more: governance/services/
# policies.py). 5,000 rules made a 5.4 MB console page; 500 covers real policies with room to
# spare. The engine's own bound (governance/policy/rules.py MAX_RULES) is 10,000.
IGRIS_POLICY_MAX_RULES = env_int("IGRIS_POLICY_MAX_RULES", 500)
if not 1 <= IGRIS_POLICY_MAX_RULES <= 10_000:
    raise EnvError(f"IGRIS_POLICY_MAX_RULES={IGRIS_POLICY_MAX_RULES} must be 1 to 10000")
IGRIS_EMBEDDED_AUDIT_WRITER = env_bool("IGRIS_EMBEDDED_AUDIT_WRITER", not REDIS_URL)
# Upstream URLs on link-local addresses (cloud metadata services) are refused unless allowed.
IGRIS_UPSTREAM_ALLOW_LINK_LOCAL = env_bool("IGRIS_UPSTREAM_ALLOW_LINK_LOCAL", False)
# Loopback and private addresses an upstream may be on (governance/ssrf.py): `private` (the
# default: loopback and the private ranges, for a self-hosted install), `loopback`, `none` (a
# shared multi-tenant install) or comma-separated CIDRs. Checked on save and at every connect.
IGRIS_UPSTREAM_ALLOWED_NETWORKS = env_str("IGRIS_UPSTREAM_ALLOWED_NETWORKS", "private")
try:
    parse_networks(IGRIS_UPSTREAM_ALLOWED_NETWORKS)
except ValueError as exc:
    raise EnvError(f"IGRIS_UPSTREAM_ALLOWED_NETWORKS: {exc}") from None
# Proxy (hot path).
IGRIS_PROXY_MAX_BODY_BYTES = env_int("IGRIS_PROXY_MAX_BODY_BYTES", 4 * 1024 * 1024)
IGRIS_PROXY_MAX_RESPONSE_BYTES = env_int("IGRIS_PROXY_MAX_RESPONSE_BYTES", 32 * 1024 * 1024)
IGRIS_KEY_RATE_PER_MIN = env_int("IGRIS_KEY_RATE_PER_MIN", 6000)
IGRIS_SSE_KEEPALIVE_S = env_int("IGRIS_SSE_KEEPALIVE_S", 15)
IGRIS_SESSION_TTL_S = env_int("IGRIS_SESSION_TTL_S", 24 * 3600)
IGRIS_PROXY_CACHE_TTL_S = env_int("IGRIS_PROXY_CACHE_TTL_S", 30)
# Redis connections per process (commands wait up to 5 s for a free one), and concurrent
# connections per upstream server per process (calls wait for one within their connect timeout).
IGRIS_REDIS_MAX_CONNECTIONS = env_int("IGRIS_REDIS_MAX_CONNECTIONS", 256)
IGRIS_UPSTREAM_MAX_CONNECTIONS = env_int("IGRIS_UPSTREAM_MAX_CONNECTIONS", 1024)
# Per-upstream circuit breaker (proxy/breaker.py): open after this many consecutive failures
# (0 turns it off), let one trial call through after the cool-down.
IGRIS_BREAKER_FAILURES = env_int("IGRIS_BREAKER_FAILURES", 5)
IGRIS_BREAKER_COOLDOWN_S = env_int("IGRIS_BREAKER_COOLDOWN_S", 30)
# When a cache refresh fails (PostgreSQL unreachable) the proxy keeps serving the last known key,
# server and policy for this long after it was loaded; past it, calls needing that entry get 503.
IGRIS_PROXY_MAX_STALE_S = env_int("IGRIS_PROXY_MAX_STALE_S", 900)
# Whole-body deadline of a proxied request: slow (slowloris) bodies get 408 and a closed socket.
IGRIS_PROXY_BODY_TIMEOUT_S = env_int("IGRIS_PROXY_BODY_TIMEOUT_S", 30)
# Audit stream entries the writer may fall behind by (it buffers a database outage); above it
# the proxy refuses calls with 503 "audit backlog full" rather than trim unstored records.
IGRIS_AUDIT_STREAM_MAX_BACKLOG = env_int("IGRIS_AUDIT_STREAM_MAX_BACKLOG", 1_000_000)
# After a part batch the audit writer waits this long before reading the stream again, so a
# steady trickle of calls is stored in batches of several events (each batch costs a transaction).
# Measured (writer CPU per event at 1,000 events/s): 631 us without, 392 us at 10 ms, 241 us at
# 20 ms (batches of 22 events instead of 4).
IGRIS_AUDIT_WRITER_LINGER_MS = env_int("IGRIS_AUDIT_WRITER_LINGER_MS", 20)
# Young-generation threshold of the collector in web workers and the audit writer
# (governance/gctune.py); 0 keeps CPython's defaults.
IGRIS_GC_YOUNG_THRESHOLD = env_int("IGRIS_GC_YOUNG_THRESHOLD", 50_000)
# Live event feed (SSE and websocket).
IGRIS_LIVE_HEARTBEAT_S = env_int("IGRIS_LIVE_HEARTBEAT_S", 15)
IGRIS_LIVE_QUEUE_LIMIT = env_int("IGRIS_LIVE_QUEUE_LIMIT", 1000)
IGRIS_LIVE_BACKLOG_CHUNK = env_int("IGRIS_LIVE_BACKLOG_CHUNK", 500)
IGRIS_LIVE_SEND_TIMEOUT_S = env_int("IGRIS_LIVE_SEND_TIMEOUT_S", 30)

# --- Static files, i18n -----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging ---------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_JSON = env_bool("LOG_JSON", PRODUCTION)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "igris_project.logs.JsonFormatter"},
        "plain": {
            "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            "datefmt": "%H:%M:%S",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_JSON else "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
    },
}
# Development serves static files straight from the app folders (no collectstatic needed).
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG and not PRODUCTION
