"""A feed simulator: a local WebSocket server that speaks the vendor's protocol and replays one
session, so the stream consumer is tested (and demonstrated) exactly as it runs live.

Protocol, as the vendor speaks it, one path per market (``/stocks``, ``/indices``,
``/options``): on connect ``[{"ev":"status","status":"connected"}]``; ``{"action":"auth",
"params":KEY}`` is answered ``auth_success`` or ``auth_failed`` (then the server closes);
``subscribe``/``unsubscribe`` with ``AM.SYM`` (comma-separated, ``AM.*`` for all) are
acknowledged with ``status: success``. Minute aggregates go out as JSON arrays of ``AM`` events
with the vendor's field names: ``sym, v, av, op, vw, o, c, h, l, a, z, s, e`` for stocks and
options, ``sym, op, o, c, h, l, s, e`` for indices. A new connection to a market kicks the
previous one (``max_connections``), as the vendor allows one per market and key.

Replay: a :class:`SessionTape` (synthetic, from :class:`~spy_assets.sources.synthetic
.SyntheticMarket` so it equals what a backfill of the session stores, or stored Parquet) is
published on a :class:`~spy_assets.live.clock.ReplayClock` at ``speed`` × real time: a bar goes
out when its minute ends. No wait is longer than ``max_delay_s`` (the clock jumps over quiet
stretches), and ``stop_event`` ends the replay.

Delivery differs from the vendor in one deliberate way when ``resume`` is on (the default):
bars published while a market had no connection, or for a symbol subscribed later, are held
and sent when the connection (or subscription) comes, so a test can demand that every bar lands
exactly once. With ``resume=False`` they are dropped, as the vendor does (gap repair's case).

Faults (:class:`Fault`, at a minute of the session and a market): ``error_close`` (close code
1011), ``normal_close`` (1000), ``force_disconnect`` (that status, then a close), ``duplicate``
(the minute's frame sent twice), ``out_of_order`` (the next minute's frame first),
``late_bar`` (a bar of the previous session), ``malformed`` (a frame that is not JSON),
``unknown_event`` (an event type the consumer does not read) and ``unsubscribed`` (a bar for a
symbol nobody subscribed). After each reconnect the last frame sent on that market is sent
again, as a vendor may.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from spy_assets import calendar, ingest
from spy_assets.live.clock import ReplayClock
from spy_assets.live.consumer import pick_contracts
from spy_assets.live.messages import INDICES, MARKETS, MINUTE_MS, OPTIONS, STOCKS, VIX_SYMBOL
from spy_assets.params import SelectionParams
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import VIX_MINUTE_BARS, Storage, dataset

FAULT_KINDS = (
    "error_close",
    "normal_close",
    "force_disconnect",
    "duplicate",
    "out_of_order",
    "late_bar",
    "malformed",
    "unknown_event",
    "unsubscribed",
)
_CLOSES = ("error_close", "normal_close", "force_disconnect")
#: The most events in one frame (the vendor batches a minute's aggregates).
FRAME_EVENTS = 200
SIMULATOR_KEY = "simulator-key"


@dataclass(frozen=True)
class Fault:
    """One injected fault, fired once, right after the frame of ``minute`` (0 = the opening
    minute) goes out on ``market``."""

    kind: str
    minute: int
    market: str = STOCKS

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}: use one of {', '.join(FAULT_KINDS)}")
        if self.market not in MARKETS:
            raise ValueError(f"unknown market {self.market!r}")


def scattered_faults(
    minutes: int,
    disconnects: int = 10,
    duplicates: int = 4,
    out_of_order: int = 4,
    late_bar: bool = True,
    junk: bool = True,
) -> list[Fault]:
    """Faults spread over a session: ``disconnects`` closes cycling through error, normal and
    force_disconnect across the three markets, duplicates and swaps, one late bar, and one each
    of the malformed, unknown and unsubscribed messages."""
    faults = []
    for i in range(disconnects):
        minute = 5 + (i * (minutes - 20)) // max(disconnects, 1)
        faults.append(Fault(_CLOSES[i % 3], minute, MARKETS[i % 3] if i % 4 else STOCKS))
    for i in range(duplicates):
        faults.append(
            Fault("duplicate", 7 + (i * (minutes - 20)) // max(duplicates, 1), MARKETS[i % 3])
        )
    for i in range(out_of_order):
        minute = 11 + (i * (minutes - 30)) // max(out_of_order, 1)
        faults.append(Fault("out_of_order", minute, MARKETS[(i + 1) % 3]))
    if late_bar:
        faults.append(Fault("late_bar", minutes // 2))
    if junk:
        faults += [
            Fault("malformed", 3),
            Fault("unknown_event", 4, INDICES),
            Fault("unsubscribed", 6),
        ]
    return faults


# --------------------------------------------------------------------- tape
@dataclass(frozen=True)
class _Event:
    due_ms: int
    minute: int
    symbol: str
    payload: dict[str, Any]


@dataclass
class SessionTape:
    """One session's minute bars as AM events per market, and the frames they came from."""

    session: dt.date
    underlying: str
    #: Per market, events in publication order (bar end, then symbol).
    events: dict[str, list[_Event]]
    #: Dataset name → the session's rows exactly as the batch path stores them.
    frames: dict[str, pd.DataFrame]
    contracts: list[str]
    #: A bar of the previous session's underlying, for the ``late_bar`` fault.
    late_bar: dict[str, Any] | None = None

    @property
    def bar_count(self) -> int:
        return sum(len(v) for v in self.events.values())

    @classmethod
    def synthetic(
        cls,
        session: dt.date,
        market: SyntheticMarket | None = None,
        underlying: str = "SPY",
        selection: SelectionParams | None = None,
    ) -> SessionTape:
        """The synthetic market's session: the frames a backfill stores, contracts picked by
        the ``option_contracts`` rule from the opening bar."""
        market = market or SyntheticMarket()
        u = underlying.upper()
        stock = ingest.split_sessions(market.stock_bars(u, session, session), [session])[session]
        stock.insert(0, "ticker", u)
        vix = ingest.split_sessions(market.index_bars(VIX_SYMBOL, session, session), [session])
        picked, _ = pick_contracts(
            u, session, ingest.opening_price(stock, session), selection or SelectionParams(), market
        )
        names = picked["contract"].astype(str).tolist()
        parts = []
        for contract in names:
            bars = ingest.split_sessions(market.option_bars(contract, session, session), [session])
            bars[session].insert(0, "contract", contract)
            parts.append(bars[session])
        frames = {
            dataset(u, "minute_bars").name: stock,
            dataset(u, "option_minute_bars").name: pd.concat(parts, ignore_index=True),
            VIX_MINUTE_BARS.name: vix[session],
        }
        previous = calendar.previous_session(session)
        before = ingest.split_sessions(market.stock_bars(u, previous, previous), [previous])
        late = before[previous]
        late_event = None
        if len(late):
            late_event = _am(u, late.iloc[len(late) // 2], None)
        return cls._build(session, u, frames, names, late_event)

    @classmethod
    def stored(cls, storage: Storage, session: dt.date, underlying: str = "SPY") -> SessionTape:
        """A stored session (its raw partitions) replayed as it was stored."""
        u = underlying.upper()
        frames = {
            dataset(u, "minute_bars").name: storage.read(dataset(u, "minute_bars"), session),
            dataset(u, "option_minute_bars").name: storage.read(
                dataset(u, "option_minute_bars"), session
            ),
            VIX_MINUTE_BARS.name: storage.read(VIX_MINUTE_BARS, session),
        }
        contracts = sorted(frames[dataset(u, "option_minute_bars").name]["contract"].unique())
        return cls._build(session, u, frames, [str(c) for c in contracts], None)

    @classmethod
    def _build(
        cls,
        session: dt.date,
        u: str,
        frames: dict[str, pd.DataFrame],
        contracts: list[str],
        late_bar: dict[str, Any] | None,
    ) -> SessionTape:
        open_ms = int(calendar.session_open(session).value // 1_000_000)
        events: dict[str, list[_Event]] = {m: [] for m in MARKETS}
        sources = [
            (STOCKS, frames[dataset(u, "minute_bars").name], "ticker"),
            (OPTIONS, frames[dataset(u, "option_minute_bars").name], "contract"),
            (INDICES, frames[VIX_MINUTE_BARS.name], None),
        ]
        for mkt, frame, sym_col in sources:
            day_open: dict[str, float] = {}
            volume: Counter = Counter()
            for row in frame.sort_values("timestamp", kind="stable").itertuples(index=False):
                sym = getattr(row, sym_col) if sym_col else VIX_SYMBOL
                day_open.setdefault(sym, float(row.open))
                if sym_col:
                    volume[sym] += float(row.volume)
                payload = _am(sym, row, (day_open[sym], volume[sym]))
                start = payload["s"]
                events[mkt].append(
                    _Event(start + MINUTE_MS, (start - open_ms) // MINUTE_MS, sym, payload)
                )
            events[mkt].sort(key=lambda e: (e.due_ms, e.symbol))
        return cls(session, u, events, frames, contracts, late_bar)


def _am(symbol: str, row: Any, day: tuple[float, float] | None) -> dict[str, Any]:
    """One AM event with the vendor's field names (index bars: o, h, l, c only)."""
    start = int(pd.Timestamp(row.timestamp).value // 1_000_000)
    event: dict[str, Any] = {"ev": "AM", "sym": symbol}
    has_volume = hasattr(row, "volume")
    if has_volume:
        v = float(row.volume)
        n = int(row.transactions)
        event["v"] = int(v) if v.is_integer() else v
        event["av"] = int(day[1]) if day else int(v)
    event["op"] = day[0] if day else float(row.open)
    if has_volume:
        event["vw"] = float(row.vwap)
    event.update(o=float(row.open), c=float(row.close), h=float(row.high), l=float(row.low))
    if has_volume:
        event["a"] = float(row.vwap)
        # The average trade size, unrounded so that v / z gives the trade count back.
        event["z"] = v / n if n else 0
    event.update(s=start, e=start + MINUTE_MS)
    return event


# ---------------------------------------------------------------- simulator
@dataclass
class SimulatorStats:
    connections: Counter = field(default_factory=Counter)
    auth_failures: int = 0
    faults_fired: list[Fault] = field(default_factory=list)
    events_sent: Counter = field(default_factory=Counter)


class _MarketFeed:
    def __init__(self, events: list[_Event]) -> None:
        self.events = events
        self.published = 0
        self.delivered = 0
        self.pending: dict[str, list[_Event]] = {}
        self.wake = asyncio.Event()
        self.connection: Any = None
        self.last_frame: str | None = None


class FeedSimulator:
    """The vendor's WebSocket on 127.0.0.1, replaying a :class:`SessionTape`.

    Use it as a context manager (or :meth:`start`/:meth:`stop`); ``feed`` is what
    ``massive.WebSocketClient(feed=..., secure=False)`` takes, and ``clock`` is the market clock
    the replay runs on, to share with the consumer.
    """

    def __init__(
        self,
        tape: SessionTape,
        *,
        speed: float = 60.0,
        max_delay_s: float = 2.0,
        lead_s: float = 90.0,
        api_key: str = SIMULATOR_KEY,
        faults: list[Fault] | tuple[Fault, ...] = (),
        resume: bool = True,
        port: int = 0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.tape = tape
        self.speed = speed
        self.max_delay_s = max_delay_s
        self.lead_s = lead_s
        self.api_key = api_key
        self.faults = list(faults)
        self.resume = resume
        self.port = port
        self.stop_event = stop_event or threading.Event()
        self.stats = SimulatorStats()
        self.clock = ReplayClock(calendar.session_open(tape.session).timestamp() - lead_s, speed)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self._feeds: dict[str, _MarketFeed] = {}

    @property
    def feed(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def finished(self) -> bool:
        """Every bar of the tape was published and sent."""
        return bool(self._feeds) and all(
            f.published == len(f.events) and f.delivered == len(f.events) and not f.pending
            for f in self._feeds.values()
        )

    def start(self) -> FeedSimulator:
        self.clock.started = time.monotonic()  # the replay starts now, not at construction
        self._thread = threading.Thread(target=self._run, name="feed-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FeedSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- server
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._feeds = {m: _MarketFeed(self.tape.events[m]) for m in MARKETS}
        async with serve(
            self._handle, "127.0.0.1", self.port, ping_interval=None, close_timeout=1
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            publisher = asyncio.create_task(self._publish())
            while not self.stop_event.is_set():
                await asyncio.sleep(0.05)
            publisher.cancel()
            for feed in self._feeds.values():
                if feed.connection is not None:
                    with contextlib.suppress(Exception):
                        await feed.connection.close(1001, "simulator stopped")
            server.close()

    async def _publish(self) -> None:
        clock = self.clock
        dues = sorted({e.due_ms for f in self._feeds.values() for e in f.events})
        for due in dues:
            while (ahead := (due / 1000 - clock.now()) / clock.speed) > 0:
                if ahead > self.max_delay_s:
                    clock.skip((ahead - self.max_delay_s) * clock.speed)
                    ahead = self.max_delay_s
                await asyncio.sleep(min(ahead, 0.05))
            for feed in self._feeds.values():
                n = feed.published
                while n < len(feed.events) and feed.events[n].due_ms <= due:
                    n += 1
                if n != feed.published:
                    feed.published = n
                    if feed.connection is None and not self.resume:
                        feed.delivered = n  # nobody listening: gone, as on the vendor's feed
                    feed.wake.set()

    async def _handle(self, ws: Any) -> None:
        market = ws.request.path.strip("/")
        if market not in self._feeds:
            await ws.close(1008, f"unknown market {market!r}")
            return
        await ws.send(
            _dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}])
        )
        try:
            auth = json.loads(await ws.recv())
        except (ValueError, TypeError):
            await ws.close(1008, "expected an auth action")
            return
        if not isinstance(auth, dict) or auth.get("action") != "auth":
            await ws.close(1008, "expected an auth action")
            return
        if auth.get("params") != self.api_key:
            self.stats.auth_failures += 1
            await ws.send(
                _dumps(
                    [{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]
                )
            )
            await ws.close(1000, "authentication failed")
            return
        await ws.send(
            _dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}])
        )
        feed = self._feeds[market]
        if feed.connection is not None:  # one connection per market and key
            old = feed.connection
            with contextlib.suppress(Exception):
                await old.send(
                    _dumps([_status("max_connections", "Maximum number of connections exceeded.")])
                )
                await old.close(1008, "max_connections")
        feed.connection = ws
        self.stats.connections[market] += 1
        subs: set[str] = set()
        newly: list[str] = []
        reader = asyncio.create_task(self._read_actions(ws, feed, subs, newly))
        feed.wake.set()
        try:
            if feed.last_frame is not None and self.stats.connections[market] > 1:
                await ws.send(feed.last_frame)  # a repeat after reconnecting, as a vendor may
            await self._send_loop(ws, market, feed, subs, newly, reader)
        except Exception:  # the client went away; the cursor still points at unsent bars
            pass
        finally:
            reader.cancel()
            if feed.connection is ws:
                feed.connection = None

    async def _read_actions(
        self, ws: Any, feed: _MarketFeed, subs: set[str], newly: list[str]
    ) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                try:
                    action = json.loads(raw)
                    verb, params = action["action"], str(action.get("params", ""))
                except (ValueError, TypeError, KeyError):
                    await ws.send(_dumps([_status("error", "malformed action")]))
                    continue
                topics = [p.strip() for p in params.split(",") if p.strip()]
                for topic in topics:
                    channel, _, sym = topic.partition(".")
                    if channel != "AM":
                        continue
                    if verb == "subscribe":
                        subs.add(sym)
                        newly.append(sym)
                    elif verb == "unsubscribe":
                        subs.discard(sym)
                if verb in ("subscribe", "unsubscribe"):
                    word = "subscribed" if verb == "subscribe" else "unsubscribed"
                    await ws.send(_dumps([_status("success", f"{word} to: {t}") for t in topics]))
                feed.wake.set()

    async def _send_loop(
        self, ws: Any, market: str, feed: _MarketFeed, subs: set[str], newly: list[str], reader: Any
    ) -> None:
        events = feed.events
        while not self.stop_event.is_set():
            if not feed.wake.is_set():
                waiter = asyncio.ensure_future(feed.wake.wait())
                done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:  # the connection closed
                    waiter.cancel()
                    return
            if feed.connection is not ws:
                return
            feed.wake.clear()
            while newly:  # held bars of a symbol subscribed just now
                sym = newly.pop()
                if sym == "*":
                    held = sorted(
                        (e for evs in feed.pending.values() for e in evs),
                        key=lambda e: (e.due_ms, e.symbol),
                    )
                    feed.pending.clear()
                else:
                    held = feed.pending.pop(sym, [])
                if held and self.resume:
                    await self._send_events(ws, market, held)
            while feed.delivered < feed.published:
                first = end = feed.delivered
                minute = events[first].minute
                while end < feed.published and events[end].minute == minute:
                    end += 1
                # Faults wait for the client's subscription: a client still sending its
                # subscribe to a closed socket drops the frames it has not read yet.
                fired = [
                    f for f in self.faults if subs and f.market == market and f.minute <= minute
                ]
                kinds = {f.kind for f in fired}
                upto = end
                if "out_of_order" in kinds and end < len(events):
                    upto = end
                    while upto < len(events) and events[upto].minute == events[end].minute:
                        upto += 1
                    if upto > feed.published:  # the next minute is not out yet: wait for it
                        break
                for fault in fired:
                    self.faults.remove(fault)
                    self.stats.faults_fired.append(fault)
                if upto > end:  # the next minute's bars go out first
                    await self._send_events(
                        ws, market, self._subscribed(feed, events[end:upto], subs)
                    )
                frame = await self._send_events(
                    ws, market, self._subscribed(feed, events[first:end], subs)
                )
                feed.delivered = upto
                if "duplicate" in kinds and frame:
                    await ws.send(frame)
                await self._extras(ws, kinds)
                close = next((f for f in fired if f.kind in _CLOSES), None)
                if close is not None:
                    await self._close(ws, close.kind)
                    return

    def _subscribed(self, feed: _MarketFeed, events: list[_Event], subs: set[str]) -> list[_Event]:
        if "*" in subs:
            return list(events)
        out = []
        for event in events:
            if event.symbol in subs:
                out.append(event)
            elif self.resume:
                feed.pending.setdefault(event.symbol, []).append(event)
        return out

    async def _send_events(self, ws: Any, market: str, events: list[_Event]) -> str | None:
        frame = None
        for i in range(0, len(events), FRAME_EVENTS):
            chunk = events[i : i + FRAME_EVENTS]
            frame = _dumps([e.payload for e in chunk])
            await ws.send(frame)
            self.stats.events_sent[market] += len(chunk)
            self._feeds[market].last_frame = frame
        return frame

    async def _extras(self, ws: Any, kinds: set[str]) -> None:
        if "late_bar" in kinds and self.tape.late_bar is not None:
            await ws.send(_dumps([self.tape.late_bar]))
        if "malformed" in kinds:
            await ws.send('[{"ev":"AM","sym":"SPY","o":1.0,')
        if "unknown_event" in kinds:
            await ws.send(_dumps([{"ev": "XQ", "sym": "SPY", "x": 1}]))
        if "unsubscribed" in kinds:
            unsub = dict(self.tape.events[STOCKS][0].payload, sym="ZZZQ")
            await ws.send(_dumps([unsub]))

    async def _close(self, ws: Any, kind: str) -> None:
        if kind == "error_close":
            await ws.close(1011, "internal error")
        elif kind == "normal_close":
            await ws.close(1000, "")
        else:
            await ws.send(_dumps([_status("force_disconnect", "Forced disconnect by the server.")]))
            await ws.close(1000, "force_disconnect")


def _status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
