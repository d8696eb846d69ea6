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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from spy_assets.errors import ConfigError

DATA_DIR = "SPY_ASSETS_DATA_DIR"
STATE_DIR = "SPY_ASSETS_STATE_DIR"
UNDERLYINGS = "SPY_ASSETS_UNDERLYINGS"
SOURCE = "SPY_ASSETS_SOURCE"
SEED = "SPY_ASSETS_SEED"
REQUESTS_PER_MINUTE = "SPY_ASSETS_REQUESTS_PER_MINUTE"
FIRST_SESSION = "SPY_ASSETS_FIRST_SESSION"
#: Where the vendor request budget is shared: unset, a SQLite file in the data dir (one host).
RATE_LIMIT_URL = "SPY_ASSETS_RATE_LIMIT_URL"
BASE_URL = "MASSIVE_BASE_URL"
DRIFT_SEVERITY = "SPY_ASSETS_DRIFT_SEVERITY"
FRESHNESS_DEADLINE = "SPY_ASSETS_FRESHNESS_DEADLINE"
ALERT_URL = "SPY_ASSETS_ALERT_URL"
STREAM_FEED = "SPY_ASSETS_STREAM_FEED"
STREAM_FLUSH_S = "SPY_ASSETS_STREAM_FLUSH_S"
STREAM_HEARTBEAT_S = "SPY_ASSETS_STREAM_HEARTBEAT_S"
RETENTION = "SPY_ASSETS_RETENTION"
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
DRIFT_SEVERITIES = ("warn", "error")
DEFAULT_DRIFT_SEVERITY = "warn"
#: Minutes after a session's close (early closes included) by which its data is due.
DEFAULT_FRESHNESS_DEADLINE = "60"
#: The vendor's 15-minute delayed WebSocket feed (what the lower plans get); ``realtime`` or a
#: ``ws://host:port`` / ``wss://host`` address are the alternatives.
DEFAULT_STREAM_FEED = "delayed"
#: The longest a received bar waits in memory before it lands: keeps lag p99 under 2 s.
DEFAULT_STREAM_FLUSH_S = 1.0
DEFAULT_STREAM_HEARTBEAT_S = 30.0

SOURCES = ("auto", "synthetic", "massive")
#: Asset key prefixes the shared datasets own: an underlying may not take them.
RESERVED_PREFIXES = ("vix", "news")
_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
#: ``landing`` or ``raw`` (every dataset), ``landing/<dataset>`` or ``<dataset>``.
_RETENTION_TARGET = re.compile(r"^(landing|raw|(landing/)?[a-z0-9.]+/[a-z_]+)$")


@dataclass(frozen=True)
class Settings:
    """The environment, validated. Build it with :func:`load`."""

    #: The data root: a local folder (a Path) or an object-store prefix (``s3://bucket/prefix``,
    #: a str); only :class:`~spy_assets.storage.Storage` reads or writes under it.
    data_dir: Path | str
    underlyings: tuple[str, ...]
    source: str
    seed: int
    requests_per_minute: float
    first_session: dt.date
    base_url: str
    key_variable: str | None
    #: ``warn``: drift is reported; ``error``: a drifted session blocks its run's downstream.
    drift_severity: str = DEFAULT_DRIFT_SEVERITY
    #: ``N`` minutes after the close, or ``HH:MM`` New York time (never before the close).
    freshness_deadline: str = DEFAULT_FRESHNESS_DEADLINE
    #: An apprise URL for alerts; unset: JSON lines in ``<data dir>/alerts.log``.
    alert_url: str | None = field(default=None, repr=False)  # a webhook URL may hold a token
    stream_feed: str = DEFAULT_STREAM_FEED
    stream_flush_s: float = DEFAULT_STREAM_FLUSH_S
    stream_heartbeat_s: float = DEFAULT_STREAM_HEARTBEAT_S
    #: redis://… or postgresql://… to share the vendor request budget across hosts.
    rate_limit_url: str | None = None
    #: Maximum age in days per target of the purge (see :func:`_retention`); empty keeps all.
    retention: tuple[tuple[str, int], ...] = ()
    #: Local state that needs a disk (the Dagster instance, catalog.duckdb, the landing zone):
    #: the data folder when it is local, else ``./data``.
    state_dir: Path = Path(DEFAULT_DATA_DIR).absolute()

    @property
    def data_is_local(self) -> bool:
        return isinstance(self.data_dir, Path)

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
    data_dir = _data_dir(env)
    settings = Settings(
        data_dir=data_dir,
        state_dir=_state_dir(env, data_dir),
        underlyings=_underlyings(env),
        source=source,
        seed=_integer(env, SEED, DEFAULT_SEED),
        requests_per_minute=_positive(env, REQUESTS_PER_MINUTE, DEFAULT_REQUESTS_PER_MINUTE),
        first_session=_date(env, FIRST_SESSION, DEFAULT_FIRST_SESSION),
        base_url=_url(env),
        key_variable=key_variable,
        drift_severity=_choice(env, DRIFT_SEVERITY, DEFAULT_DRIFT_SEVERITY, DRIFT_SEVERITIES),
        freshness_deadline=_deadline(env),
        alert_url=_alert_url(env),
        stream_feed=_stream_feed(env),
        stream_flush_s=_positive(env, STREAM_FLUSH_S, DEFAULT_STREAM_FLUSH_S),
        stream_heartbeat_s=_positive(env, STREAM_HEARTBEAT_S, DEFAULT_STREAM_HEARTBEAT_S),
        rate_limit_url=_rate_limit_url(env),
        retention=_retention(env),
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


def vendor_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The vendor key's value, to redact it from what leaves the process (never to print)."""
    env = os.environ if environ is None else environ
    return next((env[n].strip() for n in KEY_VARIABLES if env.get(n, "").strip()), None)


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() else None


def _data_dir(env: Mapping[str, str]) -> Path | str:
    value = _raw(env, DATA_DIR) or DEFAULT_DATA_DIR
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value):
        from spy_assets.storage import is_object_store_url

        if is_object_store_url(value.rstrip("/")):
            return value.rstrip("/")
        raise ConfigError(
            f"{DATA_DIR}={value!r}: use a local folder or an s3://bucket[/prefix] URL"
        )
    return Path(value).expanduser().absolute()


def _state_dir(env: Mapping[str, str], data_dir: Path | str) -> Path:
    value = _raw(env, STATE_DIR)
    if value is None:
        return data_dir if isinstance(data_dir, Path) else Path(DEFAULT_DATA_DIR).absolute()
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value):
        raise ConfigError(f"{STATE_DIR}={value!r}: use a local folder (it holds local state)")
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


def _deadline(env: Mapping[str, str]) -> str:
    value = _raw(env, FRESHNESS_DEADLINE) or DEFAULT_FRESHNESS_DEADLINE
    if re.fullmatch(r"\d{1,4}", value) and int(value) <= 24 * 60:
        return str(int(value))
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    if match and int(match[1]) < 24 and int(match[2]) < 60:
        return f"{int(match[1]):02d}:{match[2]}"
    raise ConfigError(
        f"{FRESHNESS_DEADLINE}={value!r}: give minutes after the close (0-1440, e.g. 60) or "
        "a New York time (HH:MM, e.g. 17:30)"
    )


def _alert_url(env: Mapping[str, str]) -> str | None:
    value = _raw(env, ALERT_URL)
    if value is not None and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", value):
        raise ConfigError(
            f"{ALERT_URL}: not a notification URL (e.g. json://127.0.0.1:8080/alerts, "
            "slack://..., mailto://...)"
        )
    return value


def _stream_feed(env: Mapping[str, str]) -> str:
    value = _raw(env, STREAM_FEED) or DEFAULT_STREAM_FEED
    if value.lower() in ("realtime", "delayed"):
        return value.lower()
    if not re.match(r"^wss?://[^/\s]+$", value):
        raise ConfigError(
            f"{STREAM_FEED}={value!r}: use realtime, delayed or a ws://host:port address"
        )
    return value


def _rate_limit_url(env: Mapping[str, str]) -> str | None:
    value = _raw(env, RATE_LIMIT_URL)
    if value is None:
        return None
    parts = urlsplit(value)
    shown = value if parts.password is None else value.replace(f":{parts.password}@", ":***@")
    scheme = parts.scheme.lower()
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError(f"{RATE_LIMIT_URL}={shown!r}: the port is not a number") from None
    if scheme in ("redis", "rediss") and parts.hostname:
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ConfigError(
                f"{RATE_LIMIT_URL}={shown!r}: the Redis database must be a number (redis://host:port/0)"
            )
        return value
    if scheme in ("postgresql", "postgres") and (parts.hostname or "host=" in parts.query):
        return value
    raise ConfigError(
        f"{RATE_LIMIT_URL}={shown!r}: use redis://host:port/db or postgresql://user@host:port/db"
    )


def _retention(env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    """``landing=7,raw=730,spy/option_minute_bars=365,landing/spy/minute_bars=3``: the maximum
    age in days (session date to today) of landing files and raw partitions, for every dataset
    (``landing``, ``raw``) or one (``landing/<dataset>``, ``<dataset>``; the most specific
    wins). Unset keeps everything."""
    value = _raw(env, RETENTION)
    if value is None:
        return ()
    rules: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        target, sep, days_text = (x.strip() for x in part.partition("="))
        target = target.lower()
        if not sep or not _RETENTION_TARGET.match(target):
            raise ConfigError(
                f"{RETENTION}: {part!r} is not <target>=<days> with a target of landing, raw, "
                "landing/<dataset> or <dataset> (e.g. landing=7,spy/option_minute_bars=365)"
            )
        days_text = days_text.lower().removesuffix("d")
        if not days_text.isdigit() or int(days_text) < 1:
            raise ConfigError(f"{RETENTION}: {part!r}: the age must be a whole number of days ≥ 1")
        if target in rules:
            raise ConfigError(f"{RETENTION} sets {target} more than once")
        rules[target] = int(days_text)
    return tuple(sorted(rules.items()))
