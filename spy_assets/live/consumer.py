"""The stream consumer: the vendor's WebSocket → micro-batches in the landing zone.

One process, outside Dagster, for one session. It waits for the open (``connect_lead_s`` before
it), connects once per market (stocks for the underlying, indices for ``I:VIX``, options once the
contracts are known), and stops after the close.

- **Sockets.** One asyncio thread runs a ``massive.WebSocketClient`` per market in raw mode; its
  callback only puts the frame and its receive time on a queue, so parsing and a slow disk never
  stall the socket (a slow callback ends in ``1011 keepalive ping timeout``). The client
  reconnects by itself after error closes but returns on a normal close and gives up for good
  after ``max_reconnects`` error closes in one ``connect()``; around it, each market has its own
  loop with capped exponential backoff and a fresh client, so neither ends the day (the backoff
  starts over only once bars flowed, so two consumers kicking each other off with
  ``max_connections`` slow down). A refused key ends the consumer at once with one line
  (:class:`~spy_assets.errors.AuthError`): retrying risks an account lockout, so indices and
  options connect only after the stocks connection was accepted.
- **Writer.** One thread parses frames (:mod:`spy_assets.live.messages`), drops repeats of
  (symbol, bar start), and buffers bars per dataset and session. A buffer is landed atomically
  (:class:`~spy_assets.landing.LandingZone`) once no bar arrived for ``flush_idle_s`` (the end
  of a minute's burst) or its oldest bar waited ``flush_interval_s``; on stop (SIGTERM, SIGINT,
  the close) the queue is drained and every buffer landed, so nothing received is lost. A failed
  write keeps the rows and is retried at the next flush.
- **Contracts.** The first regular-session bar of the underlying gives the open; the day's
  contracts are then picked (off the writer thread) by :func:`pick_contracts`, the same core
  call with the same :class:`~spy_assets.params.SelectionParams` as the ``option_contracts``
  asset, and subscribed on the options connection. A consumer started after the open takes the
  opening bar from the landing zone, else from the market source's REST read of the session.
- **Heartbeat.** A log line every ``heartbeat_s`` with counts, queue depth and lag (a bar's end
  to its landing, in wall seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from massive import WebSocketClient
from massive.exceptions import AuthError as VendorAuthError
from massive.websocket.models import Feed
from websockets.asyncio.client import ClientConnection

from spy_assets import calendar, contracts, ingest, redaction
from spy_assets.errors import AuthError, SpyAssetsError
from spy_assets.landing import LandingZone
from spy_assets.live.clock import WallClock
from spy_assets.live.messages import (
    INDICES,
    MARKETS,
    MINUTE_MS,
    OPTIONS,
    STOCK,
    STOCKS,
    VIX_SYMBOL,
    Bar,
    FrameParser,
    RecentKeys,
    SessionWindows,
    StreamCounts,
    bars_frame,
)
from spy_assets.params import SelectionParams
from spy_assets.sources.base import MarketSource

logger = logging.getLogger(__name__)

_STOP = object()
_SOCKET_LOGGERS = ("websockets", "websockets.client", "websockets.server", "WebSocketClient")


class MarketClock(Protocol):
    speed: float

    def now(self) -> float: ...


@dataclass(frozen=True)
class StreamSettings:
    """How the consumer connects, batches and reports. Durations ending in ``_s`` are wall
    seconds unless they say market time."""

    data_dir: Path
    underlyings: tuple[str, ...] = ("SPY",)
    #: The feed host (``massive.Feed``'s values, or ``127.0.0.1:PORT`` for a local server).
    feed: str = "delayed.massive.com"
    secure: bool = True
    #: The 15-minute delayed feed: bars arrive that much later, so the day ends later.
    delayed: bool = True
    flush_interval_s: float = 1.0
    flush_idle_s: float = 0.2
    heartbeat_s: float = 30.0
    #: Market seconds before the open to connect, and after the close (plus the feed's
    #: delay) to keep listening.
    connect_lead_s: float = 60.0
    close_grace_s: float = 180.0
    #: After the close, stop only once no bar arrived for this long.
    quiet_s: float = 2.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    #: The client's own limit on reconnects within one ``connect()``.
    max_reconnects: int = 5
    dedup_window_min: int = 60
    dedup_capacity: int = 200_000
    selection: SelectionParams = field(default_factory=SelectionParams)

    @property
    def end_grace_s(self) -> float:
        return self.close_grace_s + (900.0 if self.delayed else 0.0)


@dataclass
class StreamResult:
    """How a consumer run ended."""

    session: dt.date
    counts: StreamCounts
    reason: str
    contracts: list[str]


class LagHistogram:
    """Lags in 10 ms bins up to 10 minutes (fixed memory), for percentiles over a whole day."""

    _BIN_S, _BINS = 0.01, 60_000

    def __init__(self) -> None:
        self._bins = np.zeros(self._BINS + 1, dtype=np.int64)

    def add(self, lags_s: np.ndarray) -> None:
        idx = np.clip((np.asarray(lags_s) / self._BIN_S).astype(np.int64), 0, self._BINS)
        np.add.at(self._bins, idx, 1)

    @property
    def count(self) -> int:
        return int(self._bins.sum())

    def percentile(self, q: float) -> float:
        """The ``q`` percentile (0–100) in seconds, the upper edge of its bin; NaN when empty."""
        total = self.count
        if not total:
            return float("nan")
        rank = int(np.searchsorted(np.cumsum(self._bins), total * q / 100.0))
        return (rank + 1) * self._BIN_S


def pick_contracts(
    underlying: str,
    session: dt.date,
    open_price: float,
    sel: SelectionParams,
    source: MarketSource | None,
) -> tuple[pd.DataFrame, list[float]]:
    """The session's contracts: the ``option_contracts`` asset's rule, with its parameters
    (``discovery`` asks the source for the listed contracts within ±1% of the open)."""
    listed = None
    if sel.selection_mode == "discovery":
        if source is None:
            raise SpyAssetsError("discovery selection needs a market source")
        expiry = contracts.expiry_for(session, sel.expiry_convention)
        listed = source.option_contracts(
            underlying, session, expiry, open_price * 0.99, open_price * 1.01
        )
    return ingest.contracts_frame(
        underlying,
        session,
        open_price,
        sel.strike_increment,
        sel.strikes_per_side,
        sel.expiry_convention,
        listed,
    )


def session_to_stream(clock: MarketClock, grace_s: float) -> dt.date:
    """The session the consumer serves: today's until its close plus the grace, else the next."""
    now = pd.Timestamp(clock.now(), unit="s", tz="UTC")
    session = calendar.current_session(now)
    if now >= calendar.session_close(session) + pd.Timedelta(seconds=grace_s):
        session = calendar.next_session(session)
    return session


class StreamConsumer:
    """One session of the live feed into the landing zone (see the module docstring)."""

    def __init__(
        self,
        settings: StreamSettings,
        api_key: str,
        *,
        clock: MarketClock | None = None,
        source: MarketSource | None = None,
        session: dt.date | None = None,
        handle_signals: bool = True,
    ) -> None:
        if not api_key:
            raise AuthError("no vendor API key: set MASSIVE_API_KEY (or POLYGON_API_KEY)")
        # websockets logs every frame at DEBUG, the auth action (with the key) included.
        redaction.install([api_key], (*redaction.DEFAULT_LOGGERS, *_SOCKET_LOGGERS))
        self.settings = settings
        self.__key = api_key
        self.clock = clock or WallClock()
        self.source = source
        self.session = session or session_to_stream(self.clock, settings.end_grace_s)
        self.handle_signals = handle_signals
        self.zone = LandingZone.under(settings.data_dir)
        self.counts = StreamCounts()
        self.parser = FrameParser(self.counts)
        self.lags = LagHistogram()
        self.stop_event = threading.Event()
        self.stopped_by: str | None = None
        self.contracts: list[str] = []
        self._fatal: Exception | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._symbols: dict[str, set[str]] = {
            STOCKS: {u.upper() for u in settings.underlyings},
            INDICES: {VIX_SYMBOL},
            OPTIONS: set(),
        }
        self.parser.subscribe(self._symbols[STOCKS] | self._symbols[INDICES])
        self._opened: set[str] = set()
        self._last_bar = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None
        self._clients: dict[str, Any] = {}

    # -------------------------------------------------------------- public
    def run(self) -> StreamResult:
        """Serve the session; returns after the close or on SIGTERM/SIGINT/:meth:`stop`.
        Raises :class:`~spy_assets.errors.AuthError` when the vendor refuses the key."""
        with self._signals():
            reason = self._serve()
        if self._fatal is not None:
            raise self._fatal
        c = self.counts
        logger.info(
            "stream %s stopped (%s): %d bars received, %d landed in %d batches, "
            "%d duplicates, %d skipped",
            self.session,
            reason,
            c.bars,
            c.landed,
            c.batches,
            c.duplicates,
            c.skipped,
        )
        return StreamResult(self.session, self.counts, reason, list(self.contracts))

    def stop(self, why: str = "stopped") -> None:
        """Ask :meth:`run` to land what it holds and return (thread-safe)."""
        if self.stopped_by is None:
            self.stopped_by = why
        self.stop_event.set()

    # --------------------------------------------------------------- phases
    def _serve(self) -> str:
        s = self.settings
        open_s = calendar.session_open(self.session).timestamp()
        close_s = calendar.session_close(self.session).timestamp()
        if not self._wait_until(open_s - s.connect_lead_s):
            return self.stopped_by or "stopped"
        writer = threading.Thread(target=self._write_loop, name="stream-writer", daemon=True)
        sockets = threading.Thread(target=self._socket_thread, name="stream-sockets", daemon=True)
        writer.start()
        self._resume_open()
        sockets.start()
        reason = "the session closed"
        next_beat = time.monotonic() + s.heartbeat_s
        while not self.stop_event.wait(0.05):
            if self.clock.now() >= close_s + s.end_grace_s and (
                time.monotonic() - self._last_bar >= s.quiet_s
            ):
                break
            if not sockets.is_alive() and self._fatal is None:
                reason = "the connections ended"
                break
            if time.monotonic() >= next_beat:
                self._heartbeat()
                next_beat = time.monotonic() + s.heartbeat_s
        else:
            reason = self.stopped_by or "stopped"
        self._stop_sockets(sockets)
        self._queue.put(_STOP)
        writer.join()
        self._heartbeat()
        return reason

    def _wait_until(self, market_ts: float) -> bool:
        """Sleep until the market clock reaches ``market_ts``; False when stopped first."""
        remaining = market_ts - self.clock.now()
        if remaining > 0:
            at = pd.Timestamp(market_ts, unit="s", tz="UTC").tz_convert(calendar.MARKET_TZ)
            logger.info(
                "stream %s: waiting for the open, connecting at %s ET (in %.0f s)",
                self.session,
                f"{at:%Y-%m-%d %H:%M}",
                remaining / self.clock.speed,
            )
        while (remaining := market_ts - self.clock.now()) > 0:
            if self.stop_event.wait(min(1.0, remaining / self.clock.speed)):
                return False
        return True

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum: int, frame: object) -> None:
            self.stop(f"{signal.Signals(signum).name} received")

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _heartbeat(self) -> None:
        c = self.counts
        now = pd.Timestamp(self.clock.now(), unit="s", tz="UTC").tz_convert(calendar.MARKET_TZ)
        per = ", ".join(f"{k} {v}" for k, v in sorted(c.bars_by_dataset.items())) or "none"
        conns = ", ".join(f"{m} {c.connections[m]}" for m in MARKETS if c.connections[m])
        logger.info(
            "heartbeat %s ET: %d bars received (%s), %d landed in %d batches, %d duplicates, "
            "skipped %d malformed / %d unknown / %d unsubscribed / %d outside the session, "
            "queue %d, lag p50 %.2f s p99 %.2f s, connections %s",
            f"{now:%H:%M:%S}",
            c.bars,
            per,
            c.landed,
            c.batches,
            c.duplicates,
            c.malformed,
            c.unknown_event,
            c.unsubscribed,
            c.outside_session,
            self._queue.qsize(),
            self.lags.percentile(50),
            self.lags.percentile(99),
            conns or "none",
        )

    # -------------------------------------------------------------- sockets
    def _socket_thread(self) -> None:
        try:
            asyncio.run(self._connections())
        except Exception as exc:  # never leave run() waiting on a dead thread
            logger.error("stream sockets failed: %s", exc)
            self.stop("the sockets failed")

    async def _connections(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_async = asyncio.Event()
        authed = asyncio.Event()
        tasks = [asyncio.create_task(self._market_loop(STOCKS, authed))]
        # The other markets connect once the key is known to be good: a refused key is
        # tried once, not once per market.
        waiter = asyncio.create_task(authed.wait())
        stopper = asyncio.create_task(self._stop_async.wait())
        await asyncio.wait([waiter, stopper, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
        if authed.is_set() and not self._stop_async.is_set():
            tasks += [
                asyncio.create_task(self._market_loop(INDICES, authed)),
                asyncio.create_task(self._market_loop(OPTIONS, authed)),
            ]
        await self._stop_async.wait()
        for client in list(self._clients.values()):  # a close handshake, not a dropped socket
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=2)
        waiter.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, waiter, stopper, return_exceptions=True)

    async def _market_loop(self, market: str, authed: asyncio.Event) -> None:
        s = self.settings
        counts = self.counts
        put = self._queue.put

        class CountedConnection(ClientConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                counts.connections[market] += 1

        bar_frames = [0]

        async def processor(raw: str | bytes) -> None:
            put((raw, time.time_ns()))
            if isinstance(raw, str) and '"AM"' in raw:
                bar_frames[0] += 1
            if market == STOCKS and not authed.is_set():
                authed.set()

        delay = s.backoff_initial_s
        stop = self._stop_async
        assert stop is not None
        while not stop.is_set():
            client = WebSocketClient(
                api_key=self.__key,
                feed=s.feed,
                market=market,
                raw=True,
                subscriptions=sorted(f"AM.{sym}" for sym in self._symbols[market]),
                max_reconnects=s.max_reconnects,
                secure=s.secure,
            )
            self._clients[market] = client
            bars_before = bar_frames[0]
            try:
                await client.connect(processor, create_connection=CountedConnection)
                why = "the server closed the connection normally"
            except VendorAuthError as exc:
                self._fatal = AuthError(
                    f"the vendor refused the API key on the {market} WebSocket "
                    f"({s.feed}): {redaction.redact(str(exc)) or 'auth_failed'}"
                )
                self.stop("the vendor refused the API key")
                stop.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                why = f"{type(exc).__name__}: {redaction.redact(str(exc))}"
            finally:
                self._clients.pop(market, None)
            if stop.is_set():
                return
            counts.outer_reconnects[market] += 1
            if bar_frames[0] > bars_before:  # it worked for a while: not a kick loop
                delay = s.backoff_initial_s
            logger.warning("%s connection ended (%s); reconnecting in %.1f s", market, why, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, s.backoff_max_s)

    def _stop_sockets(self, sockets: threading.Thread) -> None:
        loop, stop = self._loop, self._stop_async
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        sockets.join(timeout=10)

    def _subscribe_options(self, symbols: list[str]) -> None:
        """Called from the writer thread: the options connection subscribes in its loop."""
        self.parser.subscribe(symbols)
        self._symbols[OPTIONS] |= set(symbols)

        def subscribe() -> None:
            client = self._clients.get(OPTIONS)
            if client is not None:
                client.subscribe(*(f"AM.{sym}" for sym in symbols))

        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(subscribe)

    # ---------------------------------------------------------------- writer
    def _write_loop(self) -> None:
        s = self.settings
        dedup = RecentKeys(s.dedup_window_min * MINUTE_MS, s.dedup_capacity)
        windows = SessionWindows()
        buffers: dict[tuple[str, dt.date], list[Bar]] = {}
        oldest = last = 0.0
        counts, parse, fifo = self.counts, self.parser.parse, self._queue
        done = False
        while not done:
            wait = 0.5
            if buffers:
                wait = min(oldest + s.flush_interval_s, last + s.flush_idle_s) - time.monotonic()
            items = []
            with contextlib.suppress(queue.Empty):
                items.append(fifo.get(timeout=wait) if wait > 0 else fifo.get_nowait())
                while len(items) < 1000:
                    items.append(fifo.get_nowait())
            for item in items:
                if item is _STOP:  # put after the sockets stopped: nothing follows it
                    done = True
                    continue
                bars = parse(*item)
                if not bars:
                    continue
                routes = self.parser.routes
                for bar in bars:
                    session = windows.session_of(bar.start_ms)
                    if session is None:
                        counts.outside_session += 1
                        continue
                    if dedup.seen(bar.symbol, bar.start_ms):
                        counts.duplicates += 1
                        continue
                    route = routes[bar.symbol]
                    if not buffers:
                        oldest = time.monotonic()
                    buffers.setdefault((route.dataset, session), []).append(bar)
                    counts.bars_by_dataset[route.dataset] += 1
                    if route.kind == STOCK and bar.symbol not in self._opened:
                        self._maybe_open(bar, session)
                last = self._last_bar = time.monotonic()
            self._log_notices()
            now = time.monotonic()
            due = now >= oldest + s.flush_interval_s or now >= last + s.flush_idle_s
            if buffers and (done or due):
                buffers = self._flush(buffers)
                oldest = time.monotonic()
        for _ in range(10):  # a failing disk at shutdown: the rows are all we have
            if not buffers:
                return
            time.sleep(1.0)
            buffers = self._flush(buffers)
        lost = sum(len(b) for b in buffers.values())
        logger.error("%d received bars could not be landed: the disk keeps failing", lost)

    def _flush(self, buffers: dict[tuple[str, dt.date], list[Bar]]) -> dict:
        kept = {}
        routes = self.parser.routes
        for (name, session), bars in buffers.items():
            kind = routes[bars[0].symbol].kind
            try:
                self.zone.write_batch(name, session, bars_frame(kind, bars))
            except Exception as exc:  # a full or failing disk: keep the rows, try again
                logger.warning("landing %s %s failed (%s); retrying", name, session, exc)
                kept[(name, session)] = bars
                continue
            self.counts.landed += len(bars)
            self.counts.batches += 1
            if session == self.session:
                ends = np.fromiter((b.start_ms for b in bars), np.float64, len(bars)) / 1000 + 60
                self.lags.add((self.clock.now() - ends) / self.clock.speed)
        return kept

    def _log_notices(self) -> None:
        notices = self.parser.notices
        while notices:
            status, message = notices.popleft()
            logger.warning("server status %s: %s", status, redaction.redact(message))

    # ------------------------------------------------------------ contracts
    def _maybe_open(self, bar: Bar, session: dt.date) -> None:
        if session != self.session:
            return
        self._opened.add(bar.symbol)
        open_ms = int(calendar.session_open(session).value // 1_000_000)
        # Off the writer thread: discovery and a late start read the REST API (rate-limited).
        if bar.start_ms == open_ms:
            target, args = self._select, (bar.symbol, bar.open)
        else:  # started after the open: the opening bar decides, as in the batch graph
            target, args = self._select_late, (bar,)
        threading.Thread(target=target, args=args, name="stream-contracts", daemon=True).start()

    def _resume_open(self) -> None:
        """A restart during the session: the opening bars already landed pick the contracts."""
        for underlying in sorted(self._symbols[STOCKS]):
            price = self._landed_open(underlying)
            if price is not None:
                self._opened.add(underlying)
                self._select(underlying, price)

    def _landed_open(self, underlying: str) -> float | None:
        from spy_assets.storage import dataset

        ds = dataset(underlying, "minute_bars")
        batches = self.zone.batches([ds], session=self.session)
        if not batches:
            return None
        bars = self.zone.read(batches)
        first = bars[bars["timestamp"] == calendar.session_open(self.session)]
        return float(first["open"].iloc[0]) if len(first) else None

    def _select_late(self, bar: Bar) -> None:
        price = self._landed_open(bar.symbol)
        if price is None and self.source is not None:
            try:
                rest = self.source.stock_bars(bar.symbol, self.session, self.session)
                price = ingest.opening_price(rest, self.session)
            except Exception as exc:
                logger.warning("the opening bar of %s could not be read: %s", bar.symbol, exc)
        if price is None:
            logger.warning(
                "no opening bar of %s for %s: contracts picked from the first bar received",
                bar.symbol,
                self.session,
            )
            price = bar.open
        self._select(bar.symbol, price)

    def _select(self, underlying: str, open_price: float) -> None:
        try:
            frame, missing = pick_contracts(
                underlying, self.session, open_price, self.settings.selection, self.source
            )
        except Exception as exc:
            logger.error(
                "picking the %s contracts for %s failed: %s", underlying, self.session, exc
            )
            return
        if missing:
            logger.warning("%s: strikes %s are not listed by the vendor", self.session, missing)
        picked = frame["contract"].astype(str).tolist()
        self.contracts += picked
        logger.info(
            "stream %s: %s opened at %.2f; subscribing %d contracts (%s)",
            self.session,
            underlying,
            open_price,
            len(picked),
            ", ".join(picked),
        )
        self._subscribe_options(picked)


def settings_from_config(
    data_dir: Path, underlyings: tuple[str, ...], feed: str, **overrides: Any
) -> StreamSettings:
    """Stream settings for a feed value: ``realtime``, ``delayed``, or ``ws://host:port``."""
    if feed in ("realtime", "delayed"):
        host = (Feed.RealTime if feed == "realtime" else Feed.Delayed).value
        return StreamSettings(data_dir, underlyings, host, True, feed == "delayed", **overrides)
    scheme, _, host = feed.partition("://")
    return StreamSettings(data_dir, underlyings, host, scheme == "wss", False, **overrides)


__all__ = [
    "LagHistogram",
    "MarketClock",
    "StreamConsumer",
    "StreamResult",
    "StreamSettings",
    "pick_contracts",
    "session_to_stream",
    "settings_from_config",
]
