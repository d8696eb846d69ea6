"""The request budget: rates, burst, the host-wide SQLite store, threads, interrupts, config."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import pytest

from spy_assets import config
from spy_assets.errors import ConfigError
from spy_assets.sources.ratelimit import (
    BUCKET_FILE,
    RateLimitStoreError,
    TokenBucket,
    bucket_file,
    clear_registry,
    key_fingerprint,
    plan_rates,
    shared_bucket,
)

KEY = "sk-live-RATELIMIT-5e6f7a8b9c"
VENDOR = "https://api.example.test"


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def _bucket(rate, burst=1):
    clock = FakeClock()
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep), clock


def _most_in_any_window(stamps: list[float], seconds: float) -> int:
    return max(sum(t <= s < t + seconds for s in stamps[i:]) for i, t in enumerate(stamps))


@pytest.fixture
def settings(tmp_path):
    clear_registry()
    yield config.load({"SPY_ASSETS_DATA_DIR": str(tmp_path / "data")})
    clear_registry()


def test_free_tier_rate_is_kept():
    bucket, clock = _bucket(5)
    stamps = []
    for _ in range(11):
        bucket.acquire()
        stamps.append(clock.now)
    # One every 12 s after the first: never 6 in any minute.
    assert stamps == pytest.approx([1000.0 + 12 * i for i in range(11)])
    assert _most_in_any_window(stamps, 60.0) == 5
    assert bucket.acquired == 11
    assert bucket.waited_s == pytest.approx(120.0)
    assert all(s >= 0.005 for s in clock.sleeps)  # slept, never spun


def test_burst_then_the_plan_rate():
    bucket, clock = _bucket(60, burst=5)
    stamps = []
    for _ in range(23):
        bucket.acquire()
        stamps.append(clock.now)
    assert stamps[:5] == [1000.0] * 5  # the burst goes at once
    assert stamps[5] == pytest.approx(1005.0)  # then at most 5 in any 5 s
    assert _most_in_any_window(stamps, 5.0) == 5
    assert _most_in_any_window(stamps, 60.0) <= 60


@pytest.mark.parametrize("rate,burst", [(7.5, 1), (7, 5), (90, 4), (5, 1)])
def test_no_minute_ever_holds_more_than_the_plan(rate, burst):
    bucket, clock = _bucket(rate, burst)
    stamps = []
    for _ in range(40):
        bucket.acquire()
        stamps.append(clock.now)
    assert _most_in_any_window(stamps, 60.0) <= int(rate)


def test_plan_rates_are_valid_for_pyrate_limiter():
    assert [(r.limit, r.interval) for r in plan_rates(5)] == [(1, 11_999)]
    assert [(r.limit, r.interval) for r in plan_rates(7.5)] == [(1, 7_999), (7, 60_000)]
    assert [(r.limit, r.interval) for r in plan_rates(60, 5)] == [(5, 4_999)]
    assert [(r.limit, r.interval) for r in plan_rates(1e9)] == [(1, 1)]


def test_idle_time_does_not_save_up_beyond_the_burst():
    bucket, clock = _bucket(60, burst=3)
    for _ in range(3):
        bucket.acquire()
    clock.now += 3600  # an hour idle
    assert [bucket.acquire() for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert clock.now == pytest.approx(1000.0 + 3600 + 3.0)  # the fourth waited for the window


def test_try_acquire_never_waits():
    bucket, clock = _bucket(6)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.now += 10
    assert bucket.try_acquire()
    assert clock.sleeps == [] and bucket.acquired == 2


def test_unlimited_bucket_counts_but_never_waits():
    bucket, clock = _bucket(None)
    assert [bucket.acquire() for _ in range(1000)] == [0.0] * 1000
    assert bucket.acquired == 1000 and clock.sleeps == [] and bucket.unlimited


@pytest.mark.parametrize("rate,burst", [(0, 1), (-5, 1), (5, 0), (float("inf"), 1)])
def test_bad_settings_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_one_bucket_per_vendor_key_and_plan_in_the_process(settings):
    a = shared_bucket(VENDOR, KEY, 5, settings=settings)
    assert shared_bucket(VENDOR, KEY, 5, settings=settings) is a
    assert shared_bucket(VENDOR, "key-two", 5, settings=settings) is not a
    assert shared_bucket(VENDOR, KEY, 100, settings=settings) is not a  # another plan
    assert shared_bucket("http://127.0.0.1:1", KEY, 5, settings=settings) is not a
    assert shared_bucket(VENDOR, KEY, None) is shared_bucket(VENDOR, KEY, None)
    assert shared_bucket(VENDOR, KEY, None).unlimited
    assert KEY not in repr(a) and "sqlite:" in repr(a)
    # Nothing is opened before the first request: no file for a source that never calls.
    assert not bucket_file(settings).exists()


def test_the_host_bucket_is_a_file_in_the_data_dir_without_the_key(settings):
    bucket = shared_bucket(VENDOR, KEY, 6000, settings=settings)
    for _ in range(3):
        bucket.acquire()
    path = bucket_file(settings)
    assert path == settings.data_dir / BUCKET_FILE and path.exists()
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
        rows = [
            tuple(map(str, row))
            for t in tables
            if "idx" not in t
            for row in db.execute(f"SELECT * FROM '{t}'")
        ]
    assert len(rows) == 3
    written = b"".join(p.read_bytes() for p in path.parent.glob(BUCKET_FILE + "*") if p.is_file())
    for secret in (KEY, key_fingerprint(KEY)):
        assert secret.encode() not in written
        assert all(secret not in text for text in [*tables, *(" ".join(r) for r in rows)])


def test_two_buckets_on_one_file_share_the_budget(settings):
    """What two processes do, in one: two objects, two SQLite connections, one file."""
    a = shared_bucket(VENDOR, KEY, 2400, settings=settings)  # one per 25 ms
    clear_registry()
    b = shared_bucket(VENDOR, KEY, 2400, settings=settings)
    assert a is not b
    stamps: list[float] = []
    lock = threading.Lock()

    def worker(bucket, n):
        for _ in range(n):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    start = time.monotonic()
    pool = [threading.Thread(target=worker, args=(bucket, 5)) for bucket in (a, b, a, b)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(stamps) == 20 and a.acquired == b.acquired == 10
    # 20 requests at 40/s with a burst of 1 cannot all be taken faster than 19 / 40 s.
    assert max(stamps) - start >= 19 / 40 * 0.95
    a.close()
    b.close()


def test_a_signal_interrupts_a_waiting_request(settings):
    bucket = shared_bucket(VENDOR, KEY, 1, settings=settings)  # one a minute
    assert bucket.acquire() == 0.0

    class Stop(Exception):
        pass

    def on_term(signum, frame):
        raise Stop

    previous = signal.signal(signal.SIGTERM, on_term)
    main = threading.main_thread().ident
    timer = threading.Timer(0.3, signal.pthread_kill, args=(main, signal.SIGTERM))
    start = time.monotonic()
    try:
        timer.start()
        with pytest.raises(Stop):
            bucket.acquire()  # would sleep a minute
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - start < 2.0
    assert bucket.acquired == 1  # the interrupted request was not taken
    assert not bucket.try_acquire()  # the budget is still spent, and nothing is left locked


def test_an_unreachable_store_is_one_line_without_the_password(tmp_path):
    clear_registry()
    settings = config.load(
        {
            "SPY_ASSETS_DATA_DIR": str(tmp_path),
            "SPY_ASSETS_RATE_LIMIT_URL": "postgresql://spy:hunter2@127.0.0.1:9/spy",
        }
    )
    bucket = shared_bucket(VENDOR, KEY, 60, settings=settings)
    with pytest.raises(RateLimitStoreError) as err:
        bucket.acquire()
    message = str(err.value)
    assert "\n" not in message and "hunter2" not in message and KEY not in message
    assert message.startswith(
        "rate limit store postgresql://spy:***@127.0.0.1:9/spy: opening failed"
    )
    clear_registry()


@pytest.mark.parametrize(
    "url,accepted",
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://user:pw@redis.internal:6380/2", True),
        ("postgresql://spy@db.internal:5432/spy", True),
        ("postgres:///spy?host=/run/postgresql", True),
        ("redis://127.0.0.1:6379/zero", False),
        ("redis://127.0.0.1:port/0", False),
        ("redis:///0", False),
        ("memcached://127.0.0.1:11211", False),
        ("127.0.0.1:6379", False),
    ],
)
def test_rate_limit_url_is_validated(url, accepted):
    env = {"SPY_ASSETS_RATE_LIMIT_URL": url}
    if accepted:
        assert config.load(env).rate_limit_url == url
        return
    with pytest.raises(ConfigError) as err:
        config.load(env)
    assert str(err.value).startswith("SPY_ASSETS_RATE_LIMIT_URL=") and "\n" not in str(err.value)


def test_a_bad_rate_limit_url_never_shows_its_password():
    with pytest.raises(ConfigError) as err:
        config.load({"SPY_ASSETS_RATE_LIMIT_URL": "mysql://app:s3cret@db:3306/x"})
    assert "s3cret" not in str(err.value) and "app:***@db" in str(err.value)
    assert config.load({}).rate_limit_url is None
