"""The shared token bucket: rate, burst, sharing and thread safety."""

from __future__ import annotations

import threading
import time

import pytest

from spy_assets.sources import ratelimit
from spy_assets.sources.ratelimit import TokenBucket, clear_registry, shared_bucket


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


def test_free_tier_rate_is_kept():
    bucket, clock = _bucket(5)
    stamps = []
    for _ in range(11):
        bucket.acquire()
        stamps.append(clock.now)
    # One every 12 s after the first: never more than 5 in any 60-second window.
    assert stamps == pytest.approx([1000.0 + 12 * i for i in range(11)])
    for i, t in enumerate(stamps):
        assert sum(t <= s < t + 60 for s in stamps[i:]) <= 5
    assert bucket.acquired == 11
    assert bucket.waited_s == pytest.approx(120.0)


def test_burst_then_steady_rate():
    bucket, clock = _bucket(60, burst=5)
    waits = [bucket.acquire() for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([1.0, 1.0, 1.0])
    assert clock.now == pytest.approx(1003.0)


def test_idle_time_refills_only_up_to_burst():
    bucket, clock = _bucket(60, burst=3)
    for _ in range(3):
        bucket.acquire()
    clock.now += 3600  # an hour idle
    assert bucket.available == pytest.approx(3.0)
    assert [bucket.acquire() for _ in range(4)] == pytest.approx([0, 0, 0, 1.0])


def test_try_acquire_never_waits():
    bucket, clock = _bucket(6)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.now += 10
    assert bucket.try_acquire()
    assert clock.sleeps == []


def test_unlimited_bucket_counts_but_never_waits():
    bucket, clock = _bucket(None)
    assert [bucket.acquire() for _ in range(1000)] == [0.0] * 1000
    assert bucket.acquired == 1000 and clock.sleeps == [] and bucket.unlimited


@pytest.mark.parametrize("rate,burst", [(0, 1), (-5, 1), (5, 0)])
def test_bad_settings_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_one_bucket_per_key_and_plan_in_the_process():
    clear_registry()
    a = shared_bucket("massive", "key-one", 5)
    assert shared_bucket("massive", "key-one", 5) is a
    assert shared_bucket("massive", "key-two", 5) is not a
    assert shared_bucket("massive", "key-one", 100) is not a  # another plan
    assert all("key-one" not in str(name) for name in ratelimit._REGISTRY)
    clear_registry()
    assert shared_bucket("massive", "key-one", 5) is not a


def test_threads_share_the_rate():
    rate_per_minute, threads, each = 3000.0, 8, 3  # 50 a second
    bucket = TokenBucket(rate_per_minute, burst=1)
    done: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(each):
            bucket.acquire()
            with lock:
                done.append(time.monotonic())

    start = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    n = threads * each
    assert len(done) == n == bucket.acquired
    # n tokens at 50/s with a burst of 1 cannot all be taken faster than (n - 1) / 50 s.
    assert max(done) - start >= (n - 1) / (rate_per_minute / 60) * 0.95
