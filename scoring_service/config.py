"""Settings from the environment (prefix ``SCORING_``); no secret has a default.

``SCORING_SECRET_KEY`` keys the household hashes. When it is unset the
service uses the random key that ``scoring-service init`` writes into the
instance folder, so a fresh checkout works without ever shipping a secret.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIB = 1024 * 1024


class Config:
    """Defaults; every ``SCORING_<NAME>`` variable overrides ``<NAME>``."""

    DATABASE_URL: str | None = None  # None: SQLite file in the instance folder
    SECRET_KEY: str | None = None
    MAX_CONTENT_LENGTH = 2 * MIB
    MAX_BATCH = 1000
    FUTURE_TOLERANCE_SECONDS = 600
    RUBRICS_DIR = str(Path(__file__).resolve().parent.parent / "rubrics")
    METRICS_PUBLIC = True
    METRICS_TOKEN: str | None = None
    RATELIMIT_ENABLED = True
    # None: an SQLite file in the instance folder, shared by the server's workers;
    # several servers need one storage they all reach (mongodb://…, redis://…)
    RATELIMIT_STORAGE_URI: str | None = None
    RATELIMIT_DEFAULT = "1200 per minute"  # per token (or per address without one)
    RATELIMIT_WRITE = "600 per minute"  # writes per token; a batch of 1000 responses is one write
    RATELIMIT_PER_ADDRESS = "3000 per minute"  # per client address, all tokens together
    TRUSTED_PROXIES = 0  # proxy hops whose X-Forwarded-For is believed (1 behind the shipped nginx)
    LOG_LEVEL = "INFO"
    UNCERTAINTY_CONCURRENCY = 1  # on-demand Monte Carlo runs per worker at once; more answer 429
    TODAY: str | None = None  # YYYY-MM-DD: fixes "today" (China time) for tests and demos; None: the real date
    # TrueType CJK font of the PDF 督办通报; None: the first of reports.supervision.FONT_PATHS that exists
    PDF_FONT: str | None = None
    # survey links (SPEC §14): where the phone page is reached (the URL in a link and its poster's QR code)
    PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    LINK_HOURLY_CAP = 30  # accepted responses per client address per survey link per hour

    # flask-smorest / OpenAPI
    API_TITLE = "老旧小区改造提质测评服务 · Old community renovation scoring service"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    API_SPEC_OPTIONS = {
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
    JSON_SORT_KEYS = False


_BOOLEAN = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class ConfigError(ValueError):
    """A ``SCORING_*`` setting the service cannot run with; the message names the variable (the command
    line prints it as the operator's error, without a traceback)."""


def from_environment(environ: dict[str, str] | None = None) -> dict:
    """Settings named ``SCORING_*`` in ``environ``, converted to the default's type."""
    environ = os.environ if environ is None else environ
    settings = {}
    for name in dir(Config):
        if not name.isupper():
            continue
        raw = environ.get(f"SCORING_{name}")
        if raw is None:
            continue
        default = getattr(Config, name)
        if isinstance(default, bool):
            if raw.lower() not in _BOOLEAN:
                raise ConfigError(f"SCORING_{name} must be a boolean (true or false), got {raw!r}")
            settings[name] = _BOOLEAN[raw.lower()]
        elif isinstance(default, int):
            try:
                settings[name] = int(raw)
            except ValueError:
                raise ConfigError(f"SCORING_{name} must be a whole number, got {raw!r}") from None
        else:
            settings[name] = raw
    check_no_template_values(settings)
    check_settings(settings)
    return settings


#: what ``SCORING_DATABASE_URL`` may start with besides a plain SQLite path (``store.open_store``)
DATABASE_SCHEMES = ("mongodb://", "mongodb+srv://", "sqlite:///")
RATE_LIMITS = ("RATELIMIT_DEFAULT", "RATELIMIT_WRITE", "RATELIMIT_PER_ADDRESS")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_settings(settings: dict) -> None:
    """Refuse, before anything starts, settings that would otherwise fail later or silently: a database URL
    of another scheme (``mongo://…`` was taken for a SQLite file path and a new, empty store was made in a
    folder named ``mongo:``), a rate limit the limits library cannot read (every API request answered 500),
    a log level logging does not know."""
    url = settings.get("DATABASE_URL")
    if url and "://" in url and not url.startswith(DATABASE_SCHEMES):
        raise ConfigError(f"SCORING_DATABASE_URL must be mongodb://…, mongodb+srv://… or an SQLite file path, "
                          f"got {url.split('://', 1)[0]}://…")
    if url and url.startswith(DATABASE_SCHEMES[:2]) and not settings.get("SECRET_KEY"):
        # the random key of `init` lives in one server's instance folder: each server (pod) of a shared store
        # would make its own and hash the same household differently, and its backups need that lost key
        raise ConfigError("SCORING_SECRET_KEY must be set with a MongoDB store (SCORING_DATABASE_URL): every "
                          "server of the store hashes households with it, and a random key in one server's "
                          "instance folder is not shared")
    for name in RATE_LIMITS:
        if name in settings:
            from limits import parse_many

            try:
                parse_many(settings[name])
            except ValueError:
                raise ConfigError(f"SCORING_{name} must be a rate limit such as '1200 per minute' or "
                                  f"'600/minute', got {settings[name]!r}") from None
    if "LOG_LEVEL" in settings and settings["LOG_LEVEL"] not in LOG_LEVELS:  # logging takes them in capitals
        raise ConfigError(f"SCORING_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {settings['LOG_LEVEL']!r}")


TEMPLATE_MARK = "CHANGE-ME"


def check_no_template_values(settings: dict) -> None:
    """Refuse to start with a placeholder from the templates in ``deploy/`` (``CHANGE-ME…``)."""
    for name, value in settings.items():
        if isinstance(value, str) and TEMPLATE_MARK in value:
            raise ConfigError(f"SCORING_{name} still holds the template placeholder {TEMPLATE_MARK!r} "
                             "from deploy/: set the real value")


def instance_secret(instance_path: str | os.PathLike, create: bool = False) -> str | None:
    """The instance folder's random secret key, created on demand by ``init``."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write aside, then link into place: several workers starting at once all
    # end up reading the one key that won, never a half-written file.
    tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
