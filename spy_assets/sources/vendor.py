"""The vendor source: Massive (formerly Polygon.io) REST through the real ``massive`` client.

``massive`` builds the URLs, sends the key, follows ``next_url`` pages and decodes the models.
Its own urllib3 retries are off; every HTTP request (each page) instead passes through
:meth:`MassiveSource._send`, which stands in for the client's connection pool: it takes a token
from the shared bucket, counts the request, and lets tenacity retry 429/5xx, timeouts, broken
connections and broken JSON bodies with capped exponential backoff, jitter and ``Retry-After``.
401/403 raise :class:`AuthError` at once (retrying risks an account lockout); other 4xx raise
:class:`SkippableError`. Data-quality problems are never retried: a malformed bar, contract or
article is dropped, logged and counted in ``stats.skipped`` one by one, and the rest of the
answer is kept. No message carries the API key.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import urllib3
from massive import RESTClient
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from spy_assets import redaction
from spy_assets.contracts import parse_ticker
from spy_assets.errors import AuthError, SkippableError, SpyAssetsError
from spy_assets.quality.drift import SchemaRecorder, bar_session, news_session
from spy_assets.sources.base import (
    BAR_COLUMNS,
    CONTRACT_COLUMNS,
    INDEX_BAR_COLUMNS,
    NEWS_COLUMNS,
    RequestStats,
    empty_frame,
)
from spy_assets.sources.ratelimit import TokenBucket, shared_bucket

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.massive.com"
#: Environment variables holding the key, in order of preference.
KEY_ENV_VARS = ("MASSIVE_API_KEY", "POLYGON_API_KEY")
BASE_URL_ENV_VAR = "MASSIVE_BASE_URL"
#: The most bars one aggs page may carry.
MAX_AGGS_LIMIT = 50_000
#: The most items one reference page (contracts, news) may carry.
MAX_REFERENCE_LIMIT = 1_000
SENTIMENT_SCORES = {"positive": 1, "neutral": 0, "negative": -1}
MARKET_TZ = "America/New_York"
#: Bar timestamps past this (epoch ms, year 2100) are taken as garbage, not as a date.
_MAX_EPOCH_MS = 4_102_444_800_000


class VendorUnavailableError(SpyAssetsError):
    """The vendor kept failing (429, 5xx, timeouts, broken bodies) after every retry."""


@dataclass
class VendorRequestStats(RequestStats):
    """Request counts, and the fields and JSON types the vendor sent per session (read off the
    bodies already parsed, no extra request) for the ``schema_drift`` checks."""

    schemas: SchemaRecorder = field(default_factory=SchemaRecorder, compare=False, repr=False)

    def as_metadata(self) -> dict[str, object]:  # type: ignore[override]
        return {**super().as_metadata(), **self.schemas.as_metadata()}


class _Transient(Exception):
    """One failed attempt that is worth another try."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _JsonCodec:
    """``massive``'s ``custom_json`` hook: the transport has already parsed (to validate) the
    body ``massive`` is about to decode, so it hands that object back instead of parsing twice."""

    def __init__(self) -> None:
        self._local = threading.local()

    def remember(self, text: str, obj: Any) -> None:
        self._local.entry = (text, obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        entry = getattr(self._local, "entry", None)
        self._local.entry = None
        if entry is not None and not kwargs and entry[0] == s:
            return entry[1]
        return json.loads(s, **kwargs)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, **kwargs)


class _GuardedPool:
    """Takes the place of the ``massive`` client's urllib3 pool: requests go through ``send``."""

    def __init__(self, pool: urllib3.PoolManager, send: Callable[..., Any]) -> None:
        self._pool = pool
        self._send = send

    def request(
        self, method: str, url: str, fields: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        kwargs["retries"] = False  # urllib3 must not retry: tenacity does, with the bucket

        def call() -> Any:
            return self._pool.request(method, url, fields=fields, headers=headers, **kwargs)

        return self._send(method, url, call)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class MassiveSource:
    """:class:`~spy_assets.sources.base.MarketSource` over the vendor's REST API.

    ``requests_per_minute`` is the plan's limit (free tier: 5; ``None``: unlimited); every
    instance and process of the host with the same key and plan shares one bucket (every host
    with ``SPY_ASSETS_RATE_LIMIT_URL``: see :mod:`~spy_assets.sources.ratelimit`).
    ``max_attempts`` counts the first try. ``sleep`` and ``today`` are injectable for tests.
    """

    name = "massive"

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        requests_per_minute: float | None = 5,
        burst: int = 1,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 120.0,
        page_limit: int = MAX_AGGS_LIMIT,
        bucket: TokenBucket | None = None,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], dt.date] | None = None,
        seed: int | None = None,
    ) -> None:
        if not api_key:
            raise AuthError(
                "no vendor API key: set MASSIVE_API_KEY (or POLYGON_API_KEY) or pass api_key"
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        if not 1 <= page_limit <= MAX_AGGS_LIMIT:
            raise ValueError(f"page_limit must be in 1..{MAX_AGGS_LIMIT}, not {page_limit}")
        redaction.install([api_key])
        self.__key = api_key
        self.base_url = base_url.rstrip("/")
        self.stats = VendorRequestStats()
        #: ``session_of`` of the read running on this thread: its pages feed the recorder.
        self._reading = threading.local()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.page_limit = page_limit
        self.bucket = bucket or shared_bucket(self.base_url, api_key, requests_per_minute, burst)
        self._sleep = sleep
        self._today = today or (lambda: pd.Timestamp.now(tz=MARKET_TZ).date())
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._codec = _JsonCodec()
        self._client = RESTClient(
            api_key=api_key,
            base=self.base_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=0,
            pagination=True,
            custom_json=self._codec,
        )
        self._client.client = _GuardedPool(self._client.client, self._send)

    @classmethod
    def from_env(cls, base_url: str | None = None, **kwargs: Any) -> MassiveSource:
        """A source with the key from ``MASSIVE_API_KEY`` or ``POLYGON_API_KEY`` and the base URL
        from ``base_url``, ``MASSIVE_BASE_URL`` or the vendor's default."""
        key = next((os.environ[v] for v in KEY_ENV_VARS if os.environ.get(v)), "")
        if not key:
            raise AuthError(
                f"no vendor API key in the environment: set {' or '.join(KEY_ENV_VARS)}"
            )
        base = base_url or os.environ.get(BASE_URL_ENV_VAR) or DEFAULT_BASE_URL
        return cls(key, base, **kwargs)

    def __repr__(self) -> str:
        return f"MassiveSource(base_url={self.base_url!r}, bucket={self.bucket!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self._client.client.clear()

    def __enter__(self) -> MassiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ bars
    def stock_bars(self, ticker: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        return self._bars(ticker.upper(), first, last, BAR_COLUMNS)

    def index_bars(self, ticker: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        symbol = ticker.upper()
        symbol = symbol if symbol.startswith("I:") else f"I:{symbol}"
        return self._bars(symbol, first, last, INDEX_BAR_COLUMNS)

    def option_bars(self, contract: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        last = min(last, parse_ticker(contract).expiration)
        if first > last:
            return empty_frame(BAR_COLUMNS)
        return self._bars(contract, first, last, BAR_COLUMNS)

    def _bars(self, ticker: str, first: dt.date, last: dt.date, columns: list[str]) -> pd.DataFrame:
        what = f"{ticker} minute bars {first}..{last}"

        def fetch() -> pd.DataFrame:
            self._reading.session_of = bar_session
            aggs = list(
                self._client.list_aggs(
                    ticker,
                    1,
                    "minute",
                    first.isoformat(),
                    last.isoformat(),
                    sort="asc",
                    limit=self.page_limit,
                )
            )
            frame, dropped = _bars_frame(ticker, aggs, columns)
            self._record_drops(what, "malformed bar(s)", dropped)
            return frame

        return self._run(what, fetch)

    # ------------------------------------------------------------- contracts
    def option_contracts(
        self,
        underlying: str,
        as_of: dt.date,
        expiration: dt.date,
        strike_min: float,
        strike_max: float,
    ) -> pd.DataFrame:
        if expiration < as_of:
            return empty_frame(CONTRACT_COLUMNS)
        root = underlying.upper()
        what = f"{root} contracts expiring {expiration} as of {as_of}"

        def fetch(expired: bool) -> list[Any]:
            self._reading.session_of = lambda item: as_of
            return list(
                self._client.list_options_contracts(
                    underlying_ticker=root,
                    expiration_date=expiration.isoformat(),
                    as_of=as_of.isoformat(),
                    strike_price_gte=strike_min,
                    strike_price_lte=strike_max,
                    expired=expired,
                    limit=MAX_REFERENCE_LIMIT,
                    sort="ticker",
                    order="asc",
                )
            )

        def run() -> pd.DataFrame:
            # Contracts that have expired by now are only found with expired=true; the other
            # flag is tried once more in case the vendor judges "expired" against as_of.
            expired = expiration < self._today()
            items = fetch(expired) or fetch(not expired)
            frame, dropped = _contracts_frame(what, items, root, expiration, strike_min, strike_max)
            self._record_drops(what, "malformed contract(s)", dropped)
            return frame

        return self._run(what, run)

    # ------------------------------------------------------------------ news
    def news(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        start, end = _utc(start), _utc(end)
        symbol = ticker.upper()
        if start >= end:
            return empty_frame(NEWS_COLUMNS)
        what = f"{symbol} news {start.isoformat()}..{end.isoformat()}"

        def run() -> pd.DataFrame:
            self._reading.session_of = news_session
            items = list(
                self._client.list_ticker_news(
                    ticker=symbol,
                    published_utc_gte=_rfc3339(start),
                    published_utc_lt=_rfc3339(end),
                    sort="published_utc",
                    order="asc",
                    limit=MAX_REFERENCE_LIMIT,
                )
            )
            frame, dropped = _news_frame(symbol, items, start, end)
            self._record_drops(what, "article(s) without id or publication time", dropped)
            return frame

        return self._run(what, run)

    # ------------------------------------------------------------- transport
    def _run(self, what: str, fn: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """Run one logical read; skips are logged and counted here, once."""
        try:
            return fn()
        except (AuthError, SkippableError) as exc:
            self._record_skip(what, str(exc))
            raise
        finally:
            self._reading.session_of = None

    def _send(self, method: str, url: str, call: Callable[[], Any]) -> Any:
        what = f"{method} {urlsplit(url).path}"
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=lambda state: self._before_sleep(what, state),
            reraise=True,
        )
        try:
            return retrying(self._attempt, what, call)
        except _Transient as exc:
            raise VendorUnavailableError(
                self._clean(
                    f"{what}: gave up after {self.max_attempts} attempt(s); last: {exc.reason}"
                )
            ) from None

    def _attempt(self, what: str, call: Callable[[], Any]) -> Any:
        self.bucket.acquire()
        with self._lock:
            self.stats.requests += 1
        try:
            resp = call()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Timeouts, resets, truncated transfers. The cause may hold a URL: drop it.
            raise _Transient(self._clean(f"{type(exc).__name__}: {exc}")) from None
        status = resp.status
        logger.debug("%s -> HTTP %d (%d bytes)", what, status, len(resp.data or b""))
        if status == 200:
            try:
                text = resp.data.decode("utf-8")
                obj = json.loads(text)
            except ValueError:
                raise _Transient(
                    f"HTTP 200 with a broken JSON body ({len(resp.data)} bytes)"
                ) from None
            if not isinstance(obj, dict):
                raise SkippableError(f"{what}: the vendor sent JSON that is not an object")
            self._codec.remember(text, obj)
            session_of = getattr(self._reading, "session_of", None)
            if session_of is not None and isinstance(obj.get("results"), list):
                self.stats.schemas.observe(obj["results"], session_of)
            return resp
        reason = self._clean(_vendor_message(resp.data))
        if status in (401, 403):
            logger.warning(
                "the vendor refused the API key (HTTP %d) for %s: %s; not retrying",
                status,
                what,
                reason,
            )
            raise AuthError(f"{what}: HTTP {status} ({reason}); check the API key and plan")
        if status == 429 or status >= 500:
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            raise _Transient(f"HTTP {status} ({reason})", retry_after)
        raise SkippableError(f"{what}: HTTP {status} ({reason})")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(self.backoff_max, self.backoff_base * 2 ** (state.attempt_number - 1))
        backoff *= 0.5 + 0.5 * self._rng.random()
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_retry_after))
        return backoff

    def _before_sleep(self, what: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        with self._lock:
            self.stats.retries += 1
        logger.info(
            "retrying %s in %.2fs (attempt %d of %d failed: %s)",
            what,
            state.next_action.sleep if state.next_action else 0.0,
            state.attempt_number,
            self.max_attempts,
            getattr(exc, "reason", exc),
        )

    def _record_skip(self, what: str, reason: str) -> None:
        reason = self._clean(reason if reason.startswith(what) else f"{what}: {reason}")
        self.stats.record_skip(reason)
        logger.warning("skipped %s", reason)

    def _record_drops(self, what: str, items: str, reasons: list[str]) -> None:
        """Count each item dropped from an otherwise good answer; one warning per read."""
        if not reasons:
            return
        reasons = [self._clean(r) for r in reasons]
        for reason in reasons:
            self.stats.record_skip(reason)
        shown = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
        logger.warning("%s: dropped %d %s and kept the rest: %s", what, len(reasons), items, shown)

    def _clean(self, text: str) -> str:
        return redaction.redact(text, [self.__key])


# ------------------------------------------------------------------ helpers
def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _vendor_message(body: bytes | None) -> str:
    """The vendor's own error text (``error`` or ``message``), short."""
    text = (body or b"").decode("utf-8", "replace")
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            text = str(obj.get("error") or obj.get("message") or obj.get("status") or text)
    except ValueError:
        pass
    text = " ".join(text.split())
    return text[:200] if text else "no message"


def _utc(value: pd.Timestamp | dt.datetime | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _rfc3339(ts: pd.Timestamp) -> str:
    if ts.microsecond or ts.nanosecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _numeric(values: list[Any]) -> pd.Series:
    return pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").astype("float64")


def _bars_frame(ticker: str, aggs: list[Any], columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Aggs → the project's bar frame, and one reason per malformed bar left out of it.

    A bar without a usable timestamp, open, high, low or close (or volume, for frames that have
    it) is dropped on its own and the others are kept; the caller counts each drop, so a
    minute that lost its bar this way is told apart from one without trades.
    """
    if not aggs:
        return empty_frame(columns), []
    required = ["open", "high", "low", "close"] + (["volume"] if "volume" in columns else [])
    stamps = _numeric([a.timestamp for a in aggs])
    data = {name: _numeric([getattr(a, name) for a in aggs]) for name in required}
    bad = pd.DataFrame(
        {"timestamp": ~stamps.between(0, _MAX_EPOCH_MS)}
        | {name: ~np.isfinite(values) for name, values in data.items()}
    )
    dropped = []
    for i in np.flatnonzero(bad.any(axis=1).to_numpy()):
        lacks = ", ".join(bad.columns[bad.iloc[i].to_numpy()])
        if bad.at[i, "timestamp"]:
            when = f"#{i + 1} of the read (no usable timestamp: {aggs[i].timestamp!r})"
        else:
            when = "at " + pd.Timestamp(int(stamps.iat[i]), unit="ms", tz="UTC").isoformat()
        dropped.append(f"{ticker} minute bar {when}: dropped, the vendor sent no numeric {lacks}")
    keep = ~bad.any(axis=1).to_numpy()
    if not keep.any():
        return empty_frame(columns), dropped
    frame = pd.DataFrame(
        {"timestamp": pd.to_datetime(stamps[keep].astype("int64"), unit="ms", utc=True)}
        | {name: values[keep] for name, values in data.items()}
    )
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ms, UTC]")
    if "vwap" in columns:
        frame["vwap"] = _numeric([a.vwap for a in aggs])[keep]
    if "transactions" in columns:
        counts = _numeric([a.transactions for a in aggs])[keep]
        counts = counts.where(counts % 1 == 0).astype("Int64")  # a count or nothing
        frame["transactions"] = counts.astype("int64") if not counts.isna().any() else counts
    if not frame["timestamp"].is_monotonic_increasing:
        frame = frame.sort_values("timestamp", kind="stable")
    return frame[columns].reset_index(drop=True), dropped


def _contracts_frame(
    what: str,
    items: list[Any],
    root: str,
    expiration: dt.date,
    strike_min: float,
    strike_max: float,
) -> tuple[pd.DataFrame, list[str]]:
    """Contracts → the contracts frame, and one reason per malformed contract left out."""
    rows, dropped = [], []
    for item in items:
        ticker = getattr(item, "ticker", None)
        try:
            row = {
                "contract": str(ticker),
                "underlying": str(item.underlying_ticker or root).upper(),
                "contract_type": str(item.contract_type).lower(),
                "strike": float(item.strike_price),
                "expiration": dt.date.fromisoformat(str(item.expiration_date)),
            }
        except (TypeError, ValueError):
            dropped.append(
                f"{what}: contract {ticker!r} dropped, the vendor sent it without a usable "
                "strike, type or expiration"
            )
            continue
        if row["contract_type"] not in ("call", "put") or not row["contract"].startswith("O:"):
            dropped.append(
                f"{what}: contract {ticker!r} dropped, the vendor sent it without an O: ticker "
                "or a call/put type"
            )
            continue
        if (
            row["expiration"] == expiration
            and strike_min - 1e-9 <= row["strike"] <= strike_max + 1e-9
        ):
            rows.append(row)
    if not rows:
        return empty_frame(CONTRACT_COLUMNS), dropped
    rows.sort(key=lambda r: (r["contract_type"], r["strike"], r["contract"]))
    return pd.DataFrame(rows, columns=CONTRACT_COLUMNS), dropped


def _news_frame(
    ticker: str, items: list[Any], start: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.DataFrame, list[str]]:
    """Articles → the news frame, and one reason per article dropped for lacking an id or a
    publication time."""
    rows, dropped = [], []
    for item in items:
        try:
            published = _utc(item.published_utc) if item.published_utc else None
        except (TypeError, ValueError):
            published = None
        if not item.id or published is None:
            name = item.id or item.article_url or item.title or "with no id, url or title"
            lacks = [
                x
                for x, gone in (("id", not item.id), ("publication time", published is None))
                if gone
            ]
            dropped.append(
                f"{ticker} news article {name!s}: dropped, the vendor sent no usable "
                f"{' or '.join(lacks)} (published_utc={item.published_utc!r})"
            )
            continue
        if not start <= published < end:
            continue
        sentiment = {}
        for insight in item.insights or []:
            score = SENTIMENT_SCORES.get(str(insight.sentiment or "").lower())
            if insight.ticker and score is not None:
                sentiment[str(insight.ticker)] = score
        rows.append(
            {
                "article_id": str(item.id),
                "published_utc": published,
                "publisher": str(item.publisher.name or "") if item.publisher else "",
                "title": str(item.title or ""),
                "article_url": str(item.article_url or ""),
                "tickers": ",".join(item.tickers or []),
                "sentiment_json": json.dumps(sentiment, sort_keys=True),
            }
        )
    if not rows:
        return empty_frame(NEWS_COLUMNS), dropped
    frame = pd.DataFrame(rows, columns=NEWS_COLUMNS)
    frame["published_utc"] = pd.to_datetime(frame["published_utc"], utc=True).astype(
        "datetime64[ms, UTC]"
    )
    frame = frame.sort_values(["published_utc", "article_id"], kind="stable")
    return frame.reset_index(drop=True), dropped
