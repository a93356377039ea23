"""Cloud Bench settings.

Everything comes from environment variables; when a variable is unset the embedded default applies
(SQLite, in-memory channel layer, eager tasks, SMS to the console outbox). See `.env.example`.
"""

import json
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def env_rate(name: str, default: tuple[int, int]) -> tuple[int, int]:
    """A rate as "hits/seconds", e.g. ``10/30``: (10, 30)."""
    value = os.environ.get(name)
    if not value:
        return default
    hits, _sep, seconds = value.partition("/")
    return int(hits), int(seconds)


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
# Only the embedded default may run without a configured key; production refuses to start without one.
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or (
    "embedded-default-insecure-key-change-me" if not env_bool("HTTPS") else ""
)
if not SECRET_KEY:
    raise RuntimeError("DJANGO_SECRET_KEY must be set when HTTPS=1")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "accounts",
    "mediation_room",
    "experts",
    "streaming",
    "voting",
    "privacy",
    "frontend",
]

MIDDLEWARE = [
    "cloudbench.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "cloudbench.staticfiles.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.StaffTotpRequiredMiddleware",
    "frontend.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "cloudbench.urls"
ASGI_APPLICATION = "asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Our templates first, so that they override allauth's layouts.
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "frontend.context_processors.site",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'cloudbench.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web process, the in-process media node and eager tasks share
    # the file without "database is locked" errors.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: channel layer, cache, celery ------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")


def _redis_db(url: str) -> str:
    path = urlparse(url).path.strip("/")
    return path if path.isdigit() else "0"


if REDIS_URL:
    # Redis keeps pub/sub channels outside its numbered databases: two installations on one Redis
    # with different database numbers would hear each other's messages. The number goes into the
    # channel names by default.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                # Timeouts: a call to a Redis that went away fails instead of holding the
                # layer's connection lock (every new socket waits for it) for ever.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 5, "socket_connect_timeout": 2}],
                "prefix": env_str("CHANNEL_PREFIX") or f"cloudbench{_redis_db(REDIS_URL)}",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_PREFIX", "cloudbench"),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://localhost/")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Late acknowledgement: a task whose worker died unacknowledged goes back to the queue once its
# visibility timeout has passed. Workers look for such tasks every interval x throttle seconds
# (kombu's default is 100 s); with a short timeout they look as often as the timeout allows.
_visibility_timeout = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _visibility_timeout,
    "unacked_restore_interval": max(1, min(10, _visibility_timeout // 3)),
    "unacked_restore_throttle": 1 if _visibility_timeout < 600 else 10,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With JSON logs a worker keeps the LOGGING below instead of installing its own text handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = env_str("LOG_FORMAT") != "json"

# --- auth: custom user, allauth phone + code sign-in, MFA for staff ---------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "frontend:my_cases"
LOGOUT_REDIRECT_URL = "frontend:home"

ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"phone", "email"}
# The password is optional: residents never set one (they sign in with a code), staff do (email +
# password, then TOTP); keeping the field makes allauth's login form take a password.
# The number is required by our signup form (accounts.forms.SignupExtraForm) rather than here, so
# that staff accounts without a number can still sign in with email + password.
ACCOUNT_SIGNUP_FIELDS = ["phone", "password1"]
# allauth warns when no login method is a required signup field; ours is, one level up (above).
SILENCED_SYSTEM_CHECKS = ["account.W001"]
ACCOUNT_USER_DISPLAY = "accounts.models.user_display"
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.SignupExtraForm"
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_PHONE_VERIFICATION_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS = 3
ACCOUNT_LOGIN_BY_CODE_TIMEOUT = 300
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_RATE_LIMITS = {
    # Per-phone and per-IP limits on sending codes and on failed sign-ins; kept in the cache (Redis
    # when configured), so they hold across processes.
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "request_login_code": "20/m/ip,3/m/key",
    "confirm_email": "1/3m/key",
    "change_phone": "1/m/user",
    "verify_phone": "3/m/key",
}
# Wrong sign-in codes per account (across codes) before it is locked, and for how long.
LOGIN_CODE_LOCKOUT_FAILURES = env_int("LOGIN_CODE_LOCKOUT_FAILURES", 6)
LOGIN_CODE_LOCKOUT_SECONDS = env_int("LOGIN_CODE_LOCKOUT_SECONDS", 15 * 60)
ACCOUNT_FORMS = {"request_login_code": "accounts.signin_forms.RequestLoginCodeForm"}
ALLAUTH_USER_CODE_FORMAT = {"numeric": True, "length": 6}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Cloud Bench"
MFA_ADAPTER = "accounts.adapters.MFAAdapter"
# Coordinators, moderators and admins must set up an authenticator app (TOTP) before they can do
# anything, and give its code at every sign-in (accounts.middleware); on by default in production.
MFA_REQUIRED_FOR_STAFF = env_bool("MFA_REQUIRED_FOR_STAFF", env_bool("HTTPS"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- i18n / time ------------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "frontend" / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "Asia/Shanghai"

# --- static & media -----------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
# Outside DEBUG, pages name static files by their content hash (collectstatic writes the manifest
# and the compressed copies; WhiteNoise serves them from STATIC_ROOT with a year's cache). In DEBUG
# (the demo, development) they are found in the apps' folders as they are edited.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "cloudbench.staticfiles.HashedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# The largest request body the web server takes (cloudbench.webserver refuses a larger one with
# 413; nginx's client_max_body_size says the same). Bodies up to it are held in memory, never in
# a temporary file: an upload is a personal file (evidence), and on disk it would be in clear.
REQUEST_BODY_MAX_BYTES = env_int("REQUEST_BODY_MAX_BYTES", 12 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES

# --- security -------------------------------------------------------------------------------------
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
# Health checks and scrapes reach a web process directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$", r"^ops/"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Camera and microphone are used by the room page on our own origin only.
PERMISSIONS_POLICY = "camera=(self), microphone=(self), geolocation=()"
# Addresses or networks of the reverse proxy (nginx). Its X-Forwarded-For / -Proto are believed
# from these and removed from anyone else (cloudbench.client_address); empty: nobody is a proxy.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])

# --- operations: health, metrics ----------------------------------------------------------------
# Who may read /metrics (addresses or networks, after the proxy's X-Forwarded-For is applied).
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1/32", "::1/128"])
# A media node writes its heartbeat this often and is counted alive this long after the last one.
MEDIA_NODE_HEARTBEAT_SECONDS = float(env_str("MEDIA_NODE_HEARTBEAT_SECONDS", "2"))
MEDIA_NODE_HEARTBEAT_TTL = float(env_str("MEDIA_NODE_HEARTBEAT_TTL", "6"))
# The pool of media nodes (streaming.pool): this node's id (default <host>-<pid>), how many rooms
# it declares it carries, the CPU (percent of one core) over which it takes no new room (0: 85 %
# of its cores), and the address and UDP port range its peers are reached on (shown to operators).
# A node's lease lapses this long after its last renewal; then its rooms are placed again.
MEDIA_NODE_ID = env_str("MEDIA_NODE_ID")
MEDIA_NODE_CAPACITY = env_int("MEDIA_NODE_CAPACITY", 8)
MEDIA_NODE_CPU_LIMIT = float(env_str("MEDIA_NODE_CPU_LIMIT", "0"))
MEDIA_NODE_PUBLIC_ADDRESS = env_str("MEDIA_NODE_PUBLIC_ADDRESS")
MEDIA_NODE_UDP_PORTS = env_str("MEDIA_NODE_UDP_PORTS")
MEDIA_NODE_LEASE_SECONDS = float(env_str("MEDIA_NODE_LEASE_SECONDS", "3"))
# Each node keeps a Redis connection named after it; the others look for the names this often, and
# a node whose connection is gone two looks in a row (its process died) loses its lease at once.
MEDIA_NODE_PRESENCE_POLL_SECONDS = float(env_str("MEDIA_NODE_PRESENCE_POLL_SECONDS", "0.25"))
# A draining node keeps a moved room's media until its members close their connections to it, at
# most this long (for a member that has its answer from the new node: this long after the answer).
MEDIA_NODE_MOVE_GRACE_SECONDS = float(env_str("MEDIA_NODE_MOVE_GRACE_SECONDS", "3"))
# HLS viewers are the distinct addresses that fetched a playlist within this many seconds.
HLS_VIEWER_WINDOW_SECONDS = env_int("HLS_VIEWER_WINDOW_SECONDS", 30)

# --- SMS and notifications -------------------------------------------------------------------------
SMS_BACKEND = env_str("SMS_BACKEND", "accounts.sms.ConsoleOutboxBackend")
SMS_GATEWAY_URL = env_str("SMS_GATEWAY_URL")
SMS_GATEWAY_TOKEN = env_str("SMS_GATEWAY_TOKEN")
SMS_GATEWAY_TIMEOUT = float(env_str("SMS_GATEWAY_TIMEOUT", "5"))
SMS_GATEWAY_RETRIES = env_int("SMS_GATEWAY_RETRIES", 3)
# A queued message whose delivery task was lost is handed to a worker again after this long.
NOTIFICATION_RESEND_AFTER_SECONDS = env_int("NOTIFICATION_RESEND_AFTER_SECONDS", 120)
# The dev-only page that shows what the console backend "sent", so a newcomer can sign in.
# It shows everyone's sign-in codes: never on by default behind HTTPS (production).
SMS_OUTBOX_PAGE = env_bool(
    "SMS_OUTBOX_PAGE", SMS_BACKEND == "accounts.sms.ConsoleOutboxBackend" and not env_bool("HTTPS")
)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Cloud Bench <noreply@cloudbench.local>")

# --- case lifecycle -----------------------------------------------------------------------------------
# Working days allowed in each stage before supervision (督办) flags the case.
STAGE_DEADLINE_DAYS = {
    "registered": 1,
    "accepted": 3,
    "matched": 5,
    "scheduled": 15,
    "in_session": 1,
    "agreed": 30,
    "not_agreed": 10,
    "withdrawn": 10,
    "followed_up": 5,
}
# Per category, stages whose working days differ from the above, as JSON:
# {"family": {"scheduled": 20}}.
STAGE_DEADLINE_DAYS_BY_CATEGORY = json.loads(env_str("STAGE_DEADLINE_DAYS_BY_CATEGORY", "{}"))
TRACKING_PREFIX = env_str("TRACKING_PREFIX", "LP")
# How long an invited expert has to answer before the next candidate is asked.
EXPERT_INVITATION_TTL_MINUTES = env_int("EXPERT_INVITATION_TTL_MINUTES", 120)
# Working days past a stage deadline before the case escalates to the street-level coordinator
# (default for stages without a StageDeadlineRule).
SUPERVISION_ESCALATE_AFTER_DAYS = env_int("SUPERVISION_ESCALATE_AFTER_DAYS", 2)
# Dotted path of a function(cases queryset) -> dict giving agreement performance (fulfilled on
# time) for the statistics; empty = counted from the case events (see mediation_room.supervision).
STATS_AGREEMENT_PERFORMANCE = env_str("STATS_AGREEMENT_PERFORMANCE")
# The largest expert list (CSV or spreadsheet) a coordinator may upload.
EXPERT_IMPORT_MAX_BYTES = env_int("EXPERT_IMPORT_MAX_BYTES", 1024 * 1024)

# --- live comments, polls ---------------------------------------------------------------------------
# Comments one user may post across all their connections, and messages one live-room socket may
# send, as (hits, seconds). The comment benchmark's posters talk faster than people.
VOTING_USER_COMMENT_LIMIT = env_rate("VOTING_USER_COMMENT_LIMIT", (10, 30))
VOTING_CONNECTION_MESSAGE_LIMIT = env_rate("VOTING_CONNECTION_MESSAGE_LIMIT", (30, 10))
# Room events that fall within this many milliseconds go out to the viewers as one batch.
VOTING_BATCH_MS = env_int("VOTING_BATCH_MS", 120)

# --- media plane ----------------------------------------------------------------------------------------
ICE_SERVERS = json.loads(env_str("ICE_SERVERS", "[]"))
TURN_SHARED_SECRET = env_str("TURN_SHARED_SECRET")
TURN_URLS = env_list("TURN_URLS", [])
TURN_CREDENTIAL_TTL = timedelta(seconds=env_int("TURN_CREDENTIAL_TTL", 6 * 3600))
# "relay": browsers and media nodes send media only through TURN (coturn); "all": any path.
ICE_TRANSPORT_POLICY = env_str("ICE_TRANSPORT_POLICY", "all")
# The only host addresses the media node's ICE gathers, offers and answers (empty: every
# interface's); tests and benchmarks keep media on loopback with 127.0.0.1.
ICE_HOST_ADDRESSES = env_list("ICE_HOST_ADDRESSES", [])
# With ICE_HOST_ADDRESSES: other addresses a peer's candidates may have (a test's browser in a
# network namespace of its own), which the node accepts without gathering on them.
ICE_PEER_ADDRESSES = env_list("ICE_PEER_ADDRESSES", [])
MEDIA_NODE_INPROCESS = env_bool("MEDIA_NODE_INPROCESS", not REDIS_URL)
# make demo: the first live public hearing has synthetic members in its room (streaming.node.showcase)
DEMO_SHOWCASE = env_bool("DEMO_SHOWCASE", False)
# Livestream: WebRTC viewers one media node serves before the watch page falls back to HLS; where
# the HLS segments are written (nginx serves BROADCAST_HLS_URL from there in production).
BROADCAST_VIEWER_LIMIT = env_int("BROADCAST_VIEWER_LIMIT", 200)
# The WebRTC viewers a media node declares it serves, of all rooms (its own and relayed ones):
# watch pages are placed on the live node with the most room left (streaming.broadcast.services).
MEDIA_NODE_VIEWER_CAPACITY = env_int("MEDIA_NODE_VIEWER_CAPACITY", BROADCAST_VIEWER_LIMIT)
# The address a node receives the composite of other nodes' rooms on (plain RTP/UDP between the
# nodes, streaming.node.broadcast.relay): a private address the other nodes reach, never public.
MEDIA_RELAY_HOST = env_str("MEDIA_RELAY_HOST", "127.0.0.1")
BROADCAST_HLS_ROOT = Path(env_str("BROADCAST_HLS_ROOT", str(MEDIA_ROOT / "hls")))
BROADCAST_HLS_URL = env_str("BROADCAST_HLS_URL", MEDIA_URL + "hls/")
# Pitch ratio applied to the parties' voices on air (e.g. 0.85); empty = unchanged.
BROADCAST_PITCH_SHIFT = float(env_str("BROADCAST_PITCH_SHIFT") or 0) or None

# --- logs and errors ---------------------------------------------------------------------------------
# "plain" (one readable line) or "json" (one JSON object per line, with the request id that follows
# a request into its tasks; see cloudbench.logs).
LOG_FORMAT = env_str("LOG_FORMAT") or "plain"
if LOG_FORMAT not in {"plain", "json"}:
    raise RuntimeError(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
# Errors to Sentry (or a compatible service) only when a DSN is set; nothing personal goes with
# them (cloudbench.error_reports).
SENTRY_DSN = env_str("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT") or (
    "production" if env_bool("HTTPS") else "development"
)
SENTRY_TRACES_SAMPLE_RATE = env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0)
if SENTRY_DSN:
    from cloudbench import error_reports

    error_reports.init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )


# --- personal data: files sealed at rest, access log, retention ----------------------------------
# Evidence, recordings and agreement PDFs are encrypted with a key of their own, wrapped by this
# master key (base64 of 32 random bytes). Without HTTPS (the demo) one is generated into var/ on
# first start; production refuses to start without it. Retired keys stay readable until
# `manage.py rotate_file_keys` has re-wrapped every file under the current one.
def _file_master_key() -> str:
    import base64
    import secrets

    value = env_str("FILE_MASTER_KEY")
    if value or HTTPS:
        return value
    path = BASE_DIR / "var" / "file-master.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path.read_text().strip()


FILE_MASTER_KEY = _file_master_key()
if not FILE_MASTER_KEY:
    raise RuntimeError("FILE_MASTER_KEY must be set when HTTPS=1 (base64 of 32 random bytes)")
FILE_MASTER_KEYS_RETIRED = env_list("FILE_MASTER_KEYS_RETIRED", [])
STORAGES["sealed"] = {"BACKEND": "privacy.storage.SealedStorage"}
# Days after a case is closed before each kind of personal data is deleted or anonymised.
RETENTION_DAYS = {
    "evidence": env_int("RETENTION_EVIDENCE_DAYS", 365),
    "recordings": env_int("RETENTION_RECORDINGS_DAYS", 180),
    "hls_replays": env_int("RETENTION_HLS_REPLAYS_DAYS", 30),
    "live_comments": env_int("RETENTION_LIVE_COMMENTS_DAYS", 90),
    "sms_log": env_int("RETENTION_SMS_LOG_DAYS", 30),
    "signin_codes": env_int("RETENTION_SIGNIN_CODES_DAYS", 1),
    "signature_ips": env_int("RETENTION_SIGNATURE_IPS_DAYS", 180),
    "access_log": env_int("RETENTION_ACCESS_LOG_DAYS", 3 * 365),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "cloudbench.logs.RequestIdFilter"},
        "outage": {"()": "cloudbench.logs.OutageFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "cloudbench.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "aioice": {"level": "WARNING"},
        "aiortc": {"level": "WARNING"},
        # retries Redis once a second while it is down, each time with a traceback
        "channels_redis.pubsub": {"filters": ["outage"]},
        # One line per task at INFO is useful from a worker, noise from inline (eager) tasks.
        "celery.app.trace": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"},
    },
}
