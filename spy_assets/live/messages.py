"""The vendor's WebSocket messages as the stream consumer reads them: parsing, routing, dedup.

A frame is a JSON array of events. Minute aggregates (``ev: "AM"``) of stocks and options carry
``sym, v, av, op, vw, o, c, h, l, a, z, s, e``; those of indices (``I:VIX``) only
``sym, op, o, c, h, l, s, e``. ``s`` is the bar start in epoch ms, which is the project's
``timestamp``. The AM event has no trade count: ``z`` is the average trade size, so
``transactions`` is ``round(v / z)`` (0 for a bar without volume; missing when ``z`` is absent
while ``v`` is not). The vendor rounds ``z``, so a live count is an estimate until the after-close
REST read replaces the session; the feed simulator sends ``z`` unrounded, so its counts come back
exactly.

Anything else is counted and skipped, never raised: a frame that is not JSON, an event that is
not an object or lacks a usable field, an event type the consumer does not read, and a bar for a
symbol it did not subscribe to.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from spy_assets import calendar
from spy_assets.contracts import parse_ticker
from spy_assets.storage import VIX_MINUTE_BARS, dataset

STOCKS, INDICES, OPTIONS = "stocks", "indices", "options"
MARKETS = (STOCKS, INDICES, OPTIONS)
VIX_SYMBOL = "I:VIX"
MINUTE_MS = 60_000
_DAY_MS = 86_400_000
#: Bar starts outside [2000, 2100) are garbage, not dates.
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000

STOCK, OPTION, INDEX = "stock", "option", "index"
_BAR_TAIL = ["timestamp", "open", "high", "low", "close", "volume", "vwap", "transactions"]
_COLUMNS = {
    STOCK: ["ticker", *_BAR_TAIL, "received_at"],
    OPTION: ["contract", *_BAR_TAIL, "received_at"],
    INDEX: ["timestamp", "open", "high", "low", "close", "received_at"],
}


class Route(NamedTuple):
    """Where a subscribed symbol's bars land: a raw dataset, and which kind of bar it is."""

    dataset: str
    kind: str
    market: str


def route_for(symbol: str) -> Route:
    """The landing dataset of a symbol: ``I:VIX`` → vix/minute_bars, ``O:SPY…`` → the option
    bars of its underlying, a stock ticker → its minute bars."""
    if symbol == VIX_SYMBOL:
        return Route(VIX_MINUTE_BARS.name, INDEX, INDICES)
    if symbol.startswith("O:"):
        root = parse_ticker(symbol).underlying
        return Route(dataset(root, "option_minute_bars").name, OPTION, OPTIONS)
    return Route(dataset(symbol, "minute_bars").name, STOCK, STOCKS)


class Bar(NamedTuple):
    """One minute aggregate as received; ``volume``/``vwap``/``transactions`` are None for
    indices."""

    symbol: str
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    vwap: float | None
    transactions: int | None
    received_ns: int


@dataclass
class StreamCounts:
    """What the consumer saw: every event is in exactly one of ``bars`` or a skip count."""

    frames: int = 0
    events: int = 0
    bars: int = 0
    duplicates: int = 0
    landed: int = 0
    batches: int = 0
    malformed: int = 0
    unknown_event: int = 0
    unsubscribed: int = 0
    outside_session: int = 0
    statuses: Counter = field(default_factory=Counter)
    bars_by_dataset: Counter = field(default_factory=Counter)
    connections: Counter = field(default_factory=Counter)
    outer_reconnects: Counter = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        return self.malformed + self.unknown_event + self.unsubscribed + self.outside_session


class FrameParser:
    """Raw frames → bars of subscribed symbols. ``routes`` is the subscription table: a bar for
    a symbol not in it is counted as unsubscribed."""

    def __init__(self, counts: StreamCounts) -> None:
        self.counts = counts
        self.routes: dict[str, Route] = {}
        #: Status messages (other than the ok ones) for the caller to log.
        self.notices: deque[tuple[str, str]] = deque(maxlen=100)

    def subscribe(self, symbols: Iterable[str]) -> None:
        routes = dict(self.routes)
        routes.update({s: route_for(s) for s in symbols})
        self.routes = routes  # swapped whole: the parser thread reads it without a lock

    def parse(self, raw: str | bytes, received_ns: int) -> list[Bar]:
        counts = self.counts
        counts.frames += 1
        try:
            events = json.loads(raw)
        except (ValueError, TypeError):
            counts.events += 1
            counts.malformed += 1
            return []
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list):
            counts.events += 1
            counts.malformed += 1
            return []
        bars = []
        routes = self.routes
        for event in events:
            counts.events += 1
            if not isinstance(event, dict):
                counts.malformed += 1
                continue
            kind = event.get("ev")
            if kind == "AM":
                bar = _bar(event, received_ns)
                if bar is None:
                    counts.malformed += 1
                elif bar.symbol not in routes:
                    counts.unsubscribed += 1
                elif routes[bar.symbol].kind != INDEX and bar.volume is None:
                    counts.malformed += 1
                else:
                    bars.append(bar)
            elif kind == "status":
                status = str(event.get("status"))
                counts.statuses[status] += 1
                if status not in ("connected", "auth_success", "success"):
                    self.notices.append((status, str(event.get("message", ""))))
            else:
                counts.unknown_event += 1
        counts.bars += len(bars)
        return bars


def _number(value: Any) -> float | None:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        return float(value)
    return None


def _bar(event: dict[str, Any], received_ns: int) -> Bar | None:
    symbol, start = event.get("sym"), event.get("s")
    if type(symbol) is not str or not symbol or type(start) is not int:
        return None
    if not _MIN_MS <= start < _MAX_MS:
        return None
    o, h, lo, c = (_number(event.get(k)) for k in ("o", "h", "l", "c"))
    if o is None or h is None or lo is None or c is None:
        return None
    volume = _number(event.get("v"))
    vwap = _number(event.get("vw"))
    size = _number(event.get("z"))
    trades = None
    if volume is not None:
        if volume == 0:
            trades = 0
        elif size is not None and size > 0:
            trades = round(volume / size)
    return Bar(symbol, start, o, h, lo, c, volume, vwap, trades, received_ns)


class RecentKeys:
    """Dedup on (symbol, bar start) with bounded memory.

    Keys are kept while their bar start is within ``window_ms`` of the newest bar seen, and at
    most ``capacity`` of them: a repeat of an older bar passes (the landing zone's consumers
    deduplicate on the dataset key anyway), so memory stays flat over any day.
    """

    def __init__(self, window_ms: int = 60 * MINUTE_MS, capacity: int = 200_000) -> None:
        self.window_ms = window_ms
        self.capacity = capacity
        self._keys: set[tuple[str, int]] = set()
        self._order: deque[tuple[int, tuple[str, int]]] = deque()
        self._newest = 0

    def __len__(self) -> int:
        return len(self._keys)

    def seen(self, symbol: str, start_ms: int) -> bool:
        """True when this bar was seen before; otherwise remembers it."""
        key = (symbol, start_ms)
        if key in self._keys:
            return True
        self._keys.add(key)
        self._order.append((start_ms, key))
        if start_ms > self._newest:
            self._newest = start_ms
        horizon = self._newest - self.window_ms
        order, keys = self._order, self._keys
        while order and (len(order) > self.capacity or order[0][0] < horizon):
            keys.discard(order.popleft()[1])
        return False


class SessionWindows:
    """Bar start → the session whose regular hours hold it, or None (cached per UTC day: the
    regular session lies inside one UTC day)."""

    def __init__(self) -> None:
        self._days: dict[int, tuple[int, int, dt.date] | None] = {}

    def session_of(self, start_ms: int) -> dt.date | None:
        day = start_ms // _DAY_MS
        window = self._days.get(day, False)
        if window is False:
            window = self._days[day] = _window(day)
        if window is None or not window[0] <= start_ms < window[1]:
            return None
        return window[2]


def _window(utc_day: int) -> tuple[int, int, dt.date] | None:
    date = dt.date(1970, 1, 1) + dt.timedelta(days=utc_day)
    if not calendar.is_session(date):
        return None
    lo, hi = calendar.window_utc(date)
    return int(lo.value // 1_000_000), int(hi.value // 1_000_000), date


def bars_frame(kind: str, bars: list[Bar]) -> pd.DataFrame:
    """Bars of one dataset as a landing batch: the raw dataset's columns and dtypes, plus
    ``received_at``."""
    cols = list(zip(*bars, strict=True)) if bars else [()] * len(Bar._fields)
    symbol, start, o, h, lo, c, volume, vwap, trades, received = cols
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(np.asarray(start, "int64"), unit="ms", utc=True).astype(
                "datetime64[ms, UTC]"
            ),
            "open": np.asarray(o, "float64"),
            "high": np.asarray(h, "float64"),
            "low": np.asarray(lo, "float64"),
            "close": np.asarray(c, "float64"),
        }
    )
    if kind != INDEX:
        frame.insert(0, "ticker" if kind == STOCK else "contract", pd.Series(symbol, dtype=str))
        frame["volume"] = np.asarray(volume, "float64")
        frame["vwap"] = np.asarray([np.nan if v is None else v for v in vwap], "float64")
        counts = pd.array(trades, dtype="Int64")
        frame["transactions"] = counts.astype("int64") if not counts.isna().any() else counts
    frame["received_at"] = pd.to_datetime(np.asarray(received, "int64"), unit="ns", utc=True)
    return frame[_COLUMNS[kind]]
