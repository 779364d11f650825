"""Settings shared by every environment; everything that differs comes from the environment."""

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("DOORSTEP_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# The audit ledger's signing key and its signed head exports: keep them on storage the database admins
# cannot rewrite (a separate volume, or copied off-site by the backup job).
DOORSTEP_AUDIT_DIR = Path(environ.Env().str("DOORSTEP_AUDIT_DIR", default=str(VAR_DIR / "audit")))
# Raw model outputs and stored context values are deleted after this many days (empty: kept); hashes stay.
DOORSTEP_RETENTION_DAYS = environ.Env().int("DOORSTEP_RETENTION_DAYS", default=0) or None
# A delivered or shown output nobody acted on within this many days is recorded as ignored (beat).
DOORSTEP_IGNORED_AFTER_DAYS = environ.Env().int("DOORSTEP_IGNORED_AFTER_DAYS", default=7)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "simple_history",
    "django_celery_beat",
    "django_htmx",
    "template_partials",
    "django_filters",
    "apps.core",
    "apps.permissions",
    "apps.connectors",
    "apps.workflows",
    "apps.policies",
    "apps.reviews",
    "apps.delivery",
    "apps.reporting",
    "apps.audit",
    "apps.monitoring",
    "apps.widget",
    "apps.governance",
    "apps.accounts",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.api.ApiBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.accounts.middleware.IdleSessionTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    # Last: turns a lockout flagged during authentication into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
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
                "apps.core.context_processors.navigation",
            ],
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'doorstep.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + busy timeout: the web process and the worker write to the same file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username + IP before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
GUARDIAN_RAISE_403 = True
ANONYMOUS_USER_NAME = None

# Login throttling (django-axes): N failures per username + IP lock that pair out for a cool-off.
AXES_VERBOSE = False
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "apps.accounts.network.client_ip"
# apps.accounts.AccessEvent is the login record; axes keeps only its failure counters.
AXES_DISABLE_ACCESS_LOG = True
# Behind N reverse proxies the client address is the N-th from the right in X-Forwarded-For; 0 = REMOTE_ADDR.
DOORSTEP_TRUSTED_PROXY_COUNT = env.int("DOORSTEP_TRUSTED_PROXY_COUNT", default=0)
DOORSTEP_METRICS_TOKEN = env.str("DOORSTEP_METRICS_TOKEN", default="")
# An authenticated session idle this long is logged out (seconds).
DOORSTEP_SESSION_IDLE_TIMEOUT = env.int("SESSION_IDLE_TIMEOUT", default=30 * 60)
# TOTP second factor: any user may enrol; these roles must, when DOORSTEP_TOTP_REQUIRED is on.
DOORSTEP_TOTP_REQUIRED = env.bool("DOORSTEP_TOTP_REQUIRED", default=False)
DOORSTEP_TOTP_REQUIRED_ROLES = ["Admin", "Governance officer"]
DOORSTEP_TOTP_ISSUER = env.str("DOORSTEP_TOTP_ISSUER", default="Doorstep")
# Single sign-on with OpenID Connect (docs/sso.md); off while OIDC_DISCOVERY_URL is empty.
DOORSTEP_OIDC = {
    "NAME": env.str("OIDC_PROVIDER_NAME", default="SSO"),
    "DISCOVERY_URL": env.str("OIDC_DISCOVERY_URL", default=""),
    "CLIENT_ID": env.str("OIDC_CLIENT_ID", default=""),
    "CLIENT_SECRET": env.str("OIDC_CLIENT_SECRET", default=""),
    "SCOPE": env.str("OIDC_SCOPE", default="openid email profile groups"),
    "GROUPS_CLAIM": env.str("OIDC_GROUPS_CLAIM", default="groups"),
    # IdP group name -> Doorstep role (apps.permissions.roles), as JSON: {"ai-governance": "Governance officer"}.
    "ROLE_MAP": env.json("OIDC_ROLE_MAP", default={}),
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor", BASE_DIR / "node_modules")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Batch endpoints take up to 1,000 items; the limit is deliberate and answered as JSON (413).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.permissions.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.core.api_permissions.HasScope",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.IdCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Doorstep API",
    "DESCRIPTION": "Connect, govern, deliver and measure AI outputs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the sidecar package: the docs work air-gapped.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "apps.core.api.error_responses_hook"],
    # Choice sets shared by several fields, or with field names used elsewhere: one stable name each.
    "ENUM_NAME_OVERRIDES": {
        "UseCaseStatusEnum": "apps.workflows.models.UseCase.Status",
        "PolicyApprovalDecisionEnum": "apps.policies.models.Approval.Decision",
        "ApprovalRequestStatusEnum": "apps.reviews.models.ApprovalRequest.Status",
    },
}

# Celery: Redis in production, kombu's filesystem transport (no server) by default.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
else:
    # Longer than any countdown we schedule, so a delayed task is not redelivered early.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Product jobs; the database scheduler stores them beside per-use-case schedules made in the UI or demo.
CELERY_BEAT_SCHEDULE = {
    "seal-audit-ledger": {"task": "apps.audit.tasks.audit_seal_task", "schedule": 60.0},
    "export-audit-head": {"task": "apps.audit.tasks.audit_head_export_task", "schedule": 24 * 3600.0},
    "apply-retention": {"task": "apps.audit.tasks.retention_apply_task", "schedule": 24 * 3600.0},
    "release-expired-review-leases": {"task": "apps.reviews.tasks.review_leases_release_task", "schedule": 60.0},
    "time-out-approvals": {"task": "apps.reviews.tasks.approvals_timeout_task", "schedule": 10.0},
    "escalate-breached-reviews": {"task": "apps.reviews.tasks.review_sla_escalate_task", "schedule": 60.0},
    "refresh-roi-rollups": {"task": "apps.reporting.tasks.rollup_refresh_task", "schedule": 300.0},
    "send-lost-deliveries": {"task": "apps.delivery.tasks.deliveries_sweep_task", "schedule": 120.0},
    "start-lost-runs": {"task": "apps.workflows.tasks.runs_sweep_task", "schedule": 120.0},
    "sync-cached-datasets": {"task": "apps.connectors.tasks.datasets_sync_due_task", "schedule": 60.0},
    "refresh-bi-tables": {"task": "apps.delivery.tasks.bi_tables_refresh_task", "schedule": 300.0},
    "mark-ignored-outputs": {"task": "apps.delivery.tasks.recommendations_ignored_task", "schedule": 3600.0},
    "policy-schedule": {"task": "apps.policies.tasks.policies_schedule_task", "schedule": 60.0},
    "evaluate-alert-rules": {"task": "apps.monitoring.tasks.alert_rules_evaluate_task", "schedule": 300.0},
}

# Review queues with business_hours=True count their SLA only inside this window (weekdays 0 = Monday, in TIME_ZONE).
REVIEW_BUSINESS_HOURS = {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}

# Secrets at rest: MultiFernet keys, newest first, comma-separated.
DOORSTEP_ENCRYPTION_KEYS = env.list("DOORSTEP_ENCRYPTION_KEYS", default=[])
DOORSTEP_DEMO_DIR = VAR_DIR / "demo"
DOORSTEP_DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="")
# The port of the demo's outside-system stand-ins (`python -m standins`, started by `make run`); unset: none.
DOORSTEP_DEMO_STANDINS_PORT = env.int("DOORSTEP_STANDINS_PORT", default=None)
# Outbound HTTP (webhooks) to these hosts is allowed even when they resolve to private ranges.
DOORSTEP_OUTBOUND_ALLOWLIST = env.list("DOORSTEP_OUTBOUND_ALLOWLIST", default=[])
# Model files and CA bundles a connector may name must lie inside these folders (a model file is unpickled).
DOORSTEP_FILE_DIRS = env.list("DOORSTEP_FILE_DIRS", default=[str(VAR_DIR)])
# Where people reach Doorstep: links in notifications, BI rows and widget snippets are built from it.
DOORSTEP_BASE_URL = env.str("DOORSTEP_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
