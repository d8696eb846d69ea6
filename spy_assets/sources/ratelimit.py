"""The vendor's request budget, shared by every process (and host) that uses one key.

The vendor counts requests per API key, so every thread, every step process (multiprocess or
Celery executor) and every host that uses one key must draw from one budget. The budget is a
pyrate-limiter bucket (a sliding-window log) that lives outside the process:

- by default a SQLite file, ``<data dir>/ratelimit.sqlite`` (:func:`bucket_file`), guarded by a
  file lock: shared by every process on the host;
- ``SPY_ASSETS_RATE_LIMIT_URL=redis://host:port/db``: a Redis sorted set, shared by every host
  that reaches that Redis (their clocks must be in sync: each stamps its own requests);
- ``SPY_ASSETS_RATE_LIMIT_URL=postgresql://…``: a PostgreSQL table (psycopg 3; the pool the
  bucket expects is a small adapter here, ``psycopg_pool`` is not a dependency).

:class:`TokenBucket` drives the bucket's own ``put``/``waiting`` rather than
``pyrate_limiter.Limiter``, whose wait loop sleeps with its own ``time.sleep``: so a wait returns
the seconds it took, tests inject a clock, and threads of a process queue before the store.

One bucket per (vendor base URL, key, plan): its name is a digest, so the key itself is never
written anywhere. :func:`shared_bucket` keeps one :class:`TokenBucket` per bucket and process;
a ``None`` rate means unlimited (the synthetic source, tests): counted, never delayed, no store.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyrate_limiter import (
    AbstractBucket,
    Duration,
    InMemoryBucket,
    Rate,
    RateItem,
    RedisBucket,
    SQLiteBucket,
)

from spy_assets import config
from spy_assets.errors import ConfigError, SpyAssetsError

Clock = Callable[[], float]
Sleep = Callable[[float], None]
#: Opens the store of one bucket for the given rates (called once, on first use).
Opener = Callable[[list[Rate]], AbstractBucket]

#: Name of the bucket file in the data dir's local state.
BUCKET_FILE = "ratelimit.sqlite"
#: Prefix of every Redis key the rate limit writes.
REDIS_KEY_PREFIX = "spy_assets:ratelimit:"
#: Expired entries are trimmed from the store once every this many admitted requests.
_LEAK_EVERY = 64
#: Sleep before trying again when a store busy with another writer reports no wait.
_MIN_SLEEP_S = 0.005
#: Longest random delay added to a sleep on a shared store, so that processes woken for the
#: same free slot do not all ask at the same instant and the slot goes to a random one.
_MAX_JITTER_S = 0.02


class RateLimitStoreError(SpyAssetsError):
    """The shared rate-limit store (SQLite file, Redis, PostgreSQL) cannot be used."""


def plan_rates(rate_per_minute: float, burst: int = 1) -> list[Rate]:
    """The pyrate-limiter rates of a plan: bursts of at most ``burst`` requests, ``burst × 60 /
    rate`` seconds apart (rounded up to the millisecond) and, when bursts could add up to more,
    at most ``rate`` (rounded down) in any minute."""
    minute_ms = Duration.MINUTE.value
    spacing_ms = max(2, math.ceil(burst * minute_ms / rate_per_minute))
    # The sliding log admits again 1 ms after an entry leaves its window: a window 1 ms short
    # of the spacing gives exactly the plan's rate.
    rates = [Rate(burst, spacing_ms - 1)]
    most_in_a_minute = burst * math.ceil(minute_ms / spacing_ms)
    if most_in_a_minute > rate_per_minute:
        # No denser than the first rate, or the library refuses the list.
        per_minute = min(math.floor(rate_per_minute), burst * minute_ms // spacing_ms)
        if per_minute > burst:
            rates.append(Rate(per_minute, Duration.MINUTE))
    return rates


class _ClockedMemoryBucket(InMemoryBucket):
    """An in-process bucket on a given clock (seconds): the unshared bucket, and tests."""

    def __init__(self, rates: list[Rate], clock: Clock) -> None:
        super().__init__(rates)
        self._seconds = clock

    def now(self) -> int:
        return round(self._seconds() * 1000)


class TokenBucket:
    """``rate_per_minute`` requests a minute for everything that shares the bucket's store.

    :meth:`acquire` blocks, sleeping (never spinning), until the store admits one request and
    returns the seconds it waited. Threads of one process take turns, so the store sees one
    contender per process and each process gets its share. A sleep in the main thread is cut
    short by SIGINT/SIGTERM (their handler's exception propagates; nothing is held while
    sleeping). A ``None`` rate means unlimited: requests are counted, never delayed.

    ``opener`` opens the shared store on first use; without one the bucket is in-process, on
    ``clock`` (tests inject a clock and a ``sleep``).
    """

    def __init__(
        self,
        rate_per_minute: float | None,
        burst: int = 1,
        *,
        opener: Opener | None = None,
        where: str = "in-process",
        name: str = "requests",
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate_per_minute is not None and not 0 < rate_per_minute < math.inf:
            raise ValueError(f"rate_per_minute must be positive or None, not {rate_per_minute!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.rate_per_minute = rate_per_minute
        self.burst = int(burst)
        self.where = where if rate_per_minute is not None else "unlimited"
        self.rates = plan_rates(rate_per_minute, self.burst) if rate_per_minute else []
        self._name = name
        self._shared = opener is not None
        self._opener = opener or (lambda rates: _ClockedMemoryBucket(rates, clock))
        self._clock = clock
        self._sleep = sleep
        self._store: AbstractBucket | None = None
        self._store_pid = 0
        self._open_lock = threading.Lock()
        self._turn = threading.Lock()
        self._count_lock = threading.Lock()
        self._since_leak = 0
        self._rng = random.Random()
        self.acquired = 0
        self.waited_s = 0.0

    @property
    def unlimited(self) -> bool:
        return self.rate_per_minute is None

    def acquire(self) -> float:
        """Take one request from the budget, sleeping until there is room; returns the seconds
        waited (0.0 when admitted at once)."""
        if self.rate_per_minute is None:
            with self._count_lock:
                self.acquired += 1
            return 0.0
        start = self._clock()
        slept = False
        with self._turn:
            while (wait_s := self._try_put()) is not None:
                jitter = self._rng.uniform(0.0, min(_MAX_JITTER_S, wait_s / 10))
                self._sleep((wait_s or _MIN_SLEEP_S) + (jitter if self._shared else 0.0))
                slept = True
        waited = max(0.0, self._clock() - start) if slept else 0.0
        with self._count_lock:
            self.acquired += 1
            self.waited_s += waited
        return waited

    def try_acquire(self) -> bool:
        """Take one request only if the budget has room now; never waits."""
        if self.rate_per_minute is not None:
            with self._turn:
                if self._try_put() is not None:
                    return False
        with self._count_lock:
            self.acquired += 1
        return True

    def open(self) -> None:
        """Open the shared store now rather than on the first request."""
        if self.rate_per_minute is not None:
            self._open()

    def close(self) -> None:
        """Close the store's connection (it reopens on next use)."""
        with self._open_lock:
            store, self._store = self._store, None
        if store is not None:
            with self._failures("closing"):
                store.close()

    def _try_put(self) -> float | None:
        """Put one request in the store: None when admitted, else the seconds until room."""
        store = self._open()
        with self._failures("taking a request"):
            item = RateItem(self._name, store.now())
            if store.put(item):
                self._since_leak += 1
                if self._since_leak >= _LEAK_EVERY:
                    self._since_leak = 0
                    store.leak(store.now())
                return None
            wait_ms = store.waiting(item)
        # -1 would mean "never fits", impossible for one request; a store that was only busy
        # (PostgreSQL's NOWAIT lock) may report a slot already free: try again shortly.
        return max(0, wait_ms) / 1000

    def _open(self) -> AbstractBucket:
        with self._open_lock:
            # A forked child must not share its parent's connection: it opens its own.
            if self._store is None or self._store_pid != os.getpid():
                with self._failures("opening"):
                    self._store = self._opener(self.rates)
                self._store_pid = os.getpid()
            return self._store

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        # The store's own errors (sqlite3, redis, psycopg, filelock) become one line; interrupts
        # (KeyboardInterrupt and its subclasses) pass through untouched.
        try:
            yield
        except SpyAssetsError:
            raise
        except Exception as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise RateLimitStoreError(
                f"rate limit store {self.where}: {doing} failed: {type(exc).__name__}: {detail}"
            ) from None

    def __repr__(self) -> str:
        if self.rate_per_minute is None:
            return "TokenBucket(unlimited)"
        return f"TokenBucket({self.rate_per_minute:g}/min, burst={self.burst}, {self.where})"


# ----------------------------------------------------------------------- names and stores
def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible name for a key: nothing the rate limit keeps holds the key."""
    return hashlib.sha256(b"spy-assets rate limit\0" + api_key.encode()).hexdigest()[:16]


def bucket_name(vendor_url: str, api_key: str, rate_per_minute: float, burst: int) -> str:
    """The store's name of the bucket of one vendor, key and plan: a digest, never the key."""
    plan = f"{vendor_url.rstrip('/')}\n{key_fingerprint(api_key)}\n{rate_per_minute!r}\n{burst}"
    return "vendor_" + hashlib.sha256(plan.encode()).hexdigest()[:24]


def bucket_file(settings: config.Settings) -> Path:
    """The host's bucket file, in the local state of the data dir."""
    return settings.state_dir / BUCKET_FILE


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def sqlite_opener(path: Path, name: str) -> Opener:
    def open_store(rates: list[Rate]) -> AbstractBucket:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteBucket.init_from_file(rates, table=name, db_path=str(path), use_file_lock=True)

    return open_store


class _ExpiringRedisBucket(RedisBucket):
    """A Redis bucket whose key expires once idle (for twice its longest window, a minute at
    least), so a key that stops being used leaves nothing behind."""

    def put(self, item: RateItem) -> Any:
        admitted = super().put(item)
        if admitted:
            idle_ms = max(2 * self.rates[-1].interval, Duration.MINUTE.value)
            self.redis.pexpire(self.bucket_key, idle_ms)
        return admitted


def _require(module: str, what: str, extra: str, url: str) -> None:
    """One line naming the extra to install when the store's client library is missing."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{config.RATE_LIMIT_URL}={redacted_url(url)!r} needs {what}: "
            f"install the '{extra}' extra (uv sync --extra {extra})"
        )


def redis_opener(url: str, name: str) -> Opener:
    _require("redis", "the redis client", "redis", url)

    def open_store(rates: list[Rate]) -> AbstractBucket:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
        return _ExpiringRedisBucket.init(rates, client, REDIS_KEY_PREFIX + name)

    return open_store


class _ConnectionPerThread:
    """What :class:`pyrate_limiter.PostgresBucket` needs of a ``psycopg_pool`` pool (not a
    dependency): a connection per thread, one transaction per use."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._local = threading.local()
        self._opened: list[Any] = []
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[Any]:
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = psycopg.connect(self._url, connect_timeout=10)
            self._opened.append(conn)
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        # The bucket swallows a failed NOWAIT lock inside the block: end that transaction too.
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        else:
            conn.commit()

    def close(self) -> None:
        self.closed = True
        for conn in self._opened:
            conn.close()


def postgres_opener(url: str, name: str) -> Opener:
    _require("psycopg", "psycopg 3", "postgres", url)

    def open_store(rates: list[Rate]) -> AbstractBucket:
        from pyrate_limiter import PostgresBucket

        return PostgresBucket(_ConnectionPerThread(url), name, rates)

    return open_store


def store_opener(settings: config.Settings, name: str) -> tuple[Opener, str]:
    """The opener of the configured store for bucket ``name``, and where it is (for messages)."""
    url = settings.rate_limit_url
    if url is None:
        path = bucket_file(settings)
        return sqlite_opener(path, name), f"sqlite:{path}"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss"):
        return redis_opener(url, name), redacted_url(url)
    return postgres_opener(url, name), redacted_url(url)


# --------------------------------------------------------------------------- registry
_REGISTRY: dict[tuple[str, str, float | None, int, str], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_bucket(
    vendor_url: str,
    api_key: str,
    rate_per_minute: float | None,
    burst: int = 1,
    *,
    settings: config.Settings | None = None,
) -> TokenBucket:
    """The bucket of one vendor key and plan, in the store the environment configures
    (``settings``: :func:`spy_assets.config.load` by default); one object per process."""
    if rate_per_minute is None:
        where = "unlimited"
    else:
        settings = settings or config.load()
        where = settings.rate_limit_url or str(bucket_file(settings))
    registry_key = (vendor_url, key_fingerprint(api_key), rate_per_minute, int(burst), where)
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(registry_key)
        if bucket is None:
            if rate_per_minute is None or settings is None:
                bucket = TokenBucket(None)
            else:
                name = bucket_name(vendor_url, api_key, rate_per_minute, int(burst))
                opener, shown = store_opener(settings, name)
                bucket = TokenBucket(rate_per_minute, burst, opener=opener, where=shown, name=name)
            _REGISTRY[registry_key] = bucket
        return bucket


def clear_registry() -> None:
    """Close and forget every shared bucket (tests)."""
    with _REGISTRY_LOCK:
        buckets = list(_REGISTRY.values())
        _REGISTRY.clear()
    for bucket in buckets:
        bucket.close()
