"""A thread-safe token bucket, shared per (vendor, key, plan) by everything in the process.

The vendor counts requests per API key, so every client instance and every thread that uses
one key must draw from the same bucket: :func:`shared_bucket` keeps a module-level registry.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """``rate_per_minute`` tokens a minute, at most ``burst`` saved up.

    :meth:`acquire` reserves the next free slot under the lock and sleeps outside it, so
    waiting threads are served in arrival order and never all wake at once. A ``None`` rate
    means unlimited (requests are still counted by the caller, never delayed).
    """

    def __init__(
        self,
        rate_per_minute: float | None,
        burst: int = 1,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate_per_minute is not None and not rate_per_minute > 0:
            raise ValueError(f"rate_per_minute must be positive or None, not {rate_per_minute!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.rate_per_minute = rate_per_minute
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()
        self.acquired = 0
        self.waited_s = 0.0

    @property
    def unlimited(self) -> bool:
        return self.rate_per_minute is None

    def _refill(self) -> None:
        now = self._clock()
        if self.rate_per_minute is not None:
            elapsed = max(0.0, now - self._last)
            refill = elapsed * self.rate_per_minute / 60.0
            self._tokens = min(float(self.burst), self._tokens + refill)
        self._last = now

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            self.acquired += 1
            if self.rate_per_minute is None:
                return 0.0
            self._refill()
            # Reserve on credit: a negative balance is the queue of threads already waiting.
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens * 60.0 / self.rate_per_minute
            self.waited_s += wait
        if wait > 0:
            self._sleep(wait)
        return wait

    def try_acquire(self) -> bool:
        """Take a token only if one is available now."""
        with self._lock:
            if self.rate_per_minute is None:
                self.acquired += 1
                return True
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.acquired += 1
                return True
            return False

    @property
    def available(self) -> float:
        """Tokens available now (negative while threads are queued)."""
        with self._lock:
            if self.rate_per_minute is None:
                return float("inf")
            self._refill()
            return self._tokens

    def __repr__(self) -> str:
        rate = "unlimited" if self.rate_per_minute is None else f"{self.rate_per_minute:g}/min"
        return f"TokenBucket({rate}, burst={self.burst})"


_REGISTRY: dict[tuple[str, str, float | None, int], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible name for a key: the registry never holds the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def shared_bucket(
    vendor: str, api_key: str, rate_per_minute: float | None, burst: int = 1
) -> TokenBucket:
    """The process-wide bucket of one vendor key and plan (rate, burst); created on first use."""
    name = (vendor, key_fingerprint(api_key), rate_per_minute, int(burst))
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(name)
        if bucket is None:
            bucket = _REGISTRY[name] = TokenBucket(rate_per_minute, burst)
        return bucket


def clear_registry() -> None:
    """Forget every shared bucket (tests)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
