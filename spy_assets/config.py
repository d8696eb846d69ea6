"""Every environment variable the project reads, its default, and its validation: one home.

Nothing else in the project reads ``os.environ`` for these settings. A bad value raises
:class:`~spy_assets.errors.ConfigError` with one line that names the variable, the value and
what is accepted.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from spy_assets.errors import ConfigError

DATA_DIR = "SPY_ASSETS_DATA_DIR"
UNDERLYINGS = "SPY_ASSETS_UNDERLYINGS"
SOURCE = "SPY_ASSETS_SOURCE"
SEED = "SPY_ASSETS_SEED"
REQUESTS_PER_MINUTE = "SPY_ASSETS_REQUESTS_PER_MINUTE"
FIRST_SESSION = "SPY_ASSETS_FIRST_SESSION"
BASE_URL = "MASSIVE_BASE_URL"
EXECUTOR = "SPY_ASSETS_EXECUTOR"
CELERY_BROKER = "SPY_ASSETS_CELERY_BROKER"
CELERY_BACKEND = "SPY_ASSETS_CELERY_BACKEND"
#: Where the vendor key may be, in order of preference.
KEY_VARIABLES = ("MASSIVE_API_KEY", "POLYGON_API_KEY")

DEFAULT_DATA_DIR = "data"
DEFAULT_UNDERLYINGS = ("SPY",)
DEFAULT_SOURCE = "auto"
DEFAULT_SEED = 7
DEFAULT_REQUESTS_PER_MINUTE = 5.0
#: The first session of history by default; the vendor plan decides how far back data exists.
DEFAULT_FIRST_SESSION = dt.date(2023, 1, 3)
DEFAULT_BASE_URL = "https://api.massive.com"

SOURCES = ("auto", "synthetic", "massive")
#: How a run executes its steps: in the run's process, a process per step, Celery workers or
#: Kubernetes jobs (the last two need the ``celery`` / ``k8s`` extra).
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
DEFAULT_EXECUTOR = "in_process"
#: Asset key prefixes the shared datasets own: an underlying may not take them.
RESERVED_PREFIXES = ("vix", "news")
_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


@dataclass(frozen=True)
class Settings:
    """The environment, validated. Build it with :func:`load`."""

    data_dir: Path
    underlyings: tuple[str, ...]
    source: str
    seed: int
    requests_per_minute: float
    first_session: dt.date
    base_url: str
    key_variable: str | None
    executor: str = DEFAULT_EXECUTOR
    #: Celery's broker and result backend URLs; None keeps dagster-celery's defaults.
    celery_broker: str | None = None
    celery_backend: str | None = None

    @property
    def source_name(self) -> str:
        """``synthetic`` or ``massive``: ``auto`` means massive when a key is set."""
        if self.source == "auto":
            return "massive" if self.key_variable else "synthetic"
        return self.source


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    source = _choice(env, SOURCE, DEFAULT_SOURCE, SOURCES)
    key_variable = next((name for name in KEY_VARIABLES if env.get(name, "").strip()), None)
    if source == "massive" and key_variable is None:
        raise ConfigError(f"{SOURCE}=massive needs a vendor key: set {' or '.join(KEY_VARIABLES)}")
    settings = Settings(
        data_dir=_data_dir(env),
        underlyings=_underlyings(env),
        source=source,
        seed=_integer(env, SEED, DEFAULT_SEED),
        requests_per_minute=_positive(env, REQUESTS_PER_MINUTE, DEFAULT_REQUESTS_PER_MINUTE),
        first_session=_date(env, FIRST_SESSION, DEFAULT_FIRST_SESSION),
        base_url=_url(env),
        key_variable=key_variable,
        executor=_choice(env, EXECUTOR, DEFAULT_EXECUTOR, EXECUTORS),
        celery_broker=_broker_url(env, CELERY_BROKER),
        celery_backend=_broker_url(env, CELERY_BACKEND),
    )
    from spy_assets.calendar import CALENDAR_START

    if settings.first_session < CALENDAR_START:
        raise ConfigError(
            f"{FIRST_SESSION}={settings.first_session}: history can start on "
            f"{CALENDAR_START} at the earliest"
        )
    if settings.source_name == "synthetic":
        from spy_assets.sources.synthetic import SYNTHETIC_UNDERLYINGS

        unknown = [u for u in settings.underlyings if u not in SYNTHETIC_UNDERLYINGS]
        if unknown:
            raise ConfigError(
                f"{UNDERLYINGS}: {', '.join(unknown)} is not in the synthetic market "
                f"({', '.join(SYNTHETIC_UNDERLYINGS)}); set a vendor key to use other tickers"
            )
    return settings


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() else None


def _data_dir(env: Mapping[str, str]) -> Path:
    value = _raw(env, DATA_DIR) or DEFAULT_DATA_DIR
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        raise ConfigError(
            f"{DATA_DIR}={value!r}: only a local folder is supported as the data root"
        )
    return Path(value).expanduser().absolute()


def _underlyings(env: Mapping[str, str]) -> tuple[str, ...]:
    value = _raw(env, UNDERLYINGS)
    if value is None:
        return DEFAULT_UNDERLYINGS
    names = [part.strip().upper() for part in value.split(",") if part.strip()]
    if not names:
        return DEFAULT_UNDERLYINGS
    for name in names:
        if name.lower() in RESERVED_PREFIXES:
            raise ConfigError(
                f"{UNDERLYINGS}: {name!r} would collide with the shared "
                f"{name.lower()}/… datasets; it cannot be an underlying"
            )
        if not _TICKER.match(name):
            raise ConfigError(f"{UNDERLYINGS}: {name!r} is not a ticker (e.g. SPY, QQQ)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{UNDERLYINGS} lists {', '.join(repeated)} more than once")
    return tuple(names)


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (_raw(env, name) or default).lower()
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: use one of {', '.join(allowed)}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if not number > 0 or number == float("inf"):
        raise ConfigError(f"{name}={value!r} must be a positive number")
    return number


def _date(env: Mapping[str, str], name: str, default: dt.date) -> dt.date:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a date: expected YYYY-MM-DD") from None


def _url(env: Mapping[str, str]) -> str:
    value = _raw(env, BASE_URL) or DEFAULT_BASE_URL
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"{BASE_URL}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def _broker_url(env: Mapping[str, str], name: str) -> str | None:
    value = _raw(env, name)
    if value is not None and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        raise ConfigError(f"{name}={value!r} is not a URL (e.g. redis://127.0.0.1:6379/0)")
    return value
