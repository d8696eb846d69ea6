"""How each dataset is built for a run's sessions: one function per dataset, no Dagster.

Every function takes a :class:`BuildRequest` (the sessions, where stored data lives, the market
source, the parameters) and returns a :class:`Built`: the sessions to store, produced one at a
time as they are consumed (so a year never sits in memory at once), the parameters it actually
used, and the facts worth reporting. The Dagster assets call exactly one of these and store the
sessions through :func:`spy_assets.gates.store_sessions`; the data flows source → raw Parquet →
features → events.

A session whose upstream failed its schema gate is not built: it comes out refused
(:attr:`SessionFrame.refused`), and the other sessions are built as usual.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from spy_assets import contracts, gates, ingest
from spy_assets.analytics import features as features_core
from spy_assets.analytics import scanner, training
from spy_assets.errors import AuthError, UnknownUnderlyingError
from spy_assets.params import ResearchParams, as_dict
from spy_assets.provenance import code_version
from spy_assets.sources.base import BAR_COLUMNS, MarketSource, empty_frame, fetch_option_bars
from spy_assets.storage import Dataset, Storage, WriteResult

logger = logging.getLogger(__name__)

VIX_TICKER = "I:VIX"


@dataclass
class BuildRequest:
    """What a build may read: the sessions of the run, storage, the source and parameters."""

    sessions: list[dt.date]
    storage: Storage
    params: ResearchParams = field(default_factory=ResearchParams)
    source: MarketSource | None = None
    #: Download sessions that are already stored (and valid) again.
    refetch: bool = False
    warn: Callable[[str], None] = logger.warning

    @property
    def market(self) -> MarketSource:
        if self.source is None:  # a wiring mistake, not a user's
            raise RuntimeError("this build reads the market but was given no source")
        return self.source


@dataclass
class SessionFrame:
    """One session of a build: its frame to store, or why it was not built."""

    session: dt.date
    frame: pd.DataFrame | None
    #: JSON-able facts about this session (unlisted strikes, contracts without bars, counts).
    facts: dict[str, object] = field(default_factory=dict)
    #: Set (and ``frame`` None) when an upstream session failed its schema gate.
    refused: str | None = None


@dataclass
class Built:
    """A build's output: the sessions to store, and what made them.

    ``sessions`` is consumed once, in order; ``facts``, ``markdown`` and ``error`` are complete
    once it is exhausted.
    """

    sessions: Iterator[SessionFrame] | dict[dt.date, pd.DataFrame]
    source: str
    params: dict[str, object] = field(default_factory=dict)
    #: Sessions already stored and valid, kept as they are (no request made).
    reused: list[dt.date] = field(default_factory=list)
    #: JSON-able facts about the whole run for the step's metadata.
    facts: dict[str, object] = field(default_factory=dict)
    #: Markdown for the step's metadata (the scan report).
    markdown: dict[str, str] = field(default_factory=dict)
    #: Set when the build stopped early: the sessions produced before are complete and stored,
    #: and then the run must fail with this error.
    error: Exception | None = None
    #: Sessions the build stored itself (the live fold, which must read, merge and write under
    #: one lock); they are checked and reported with the others.
    written: dict[dt.date, WriteResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.sessions, dict):  # frames per session, all in hand (the live fold)
            self.sessions = _frames(dict(self.sessions))

    @property
    def frames(self) -> dict[dt.date, pd.DataFrame]:
        """Every produced session's frame at once (consumes ``sessions``): for callers that
        need them together, such as the live stitch (one session)."""
        return {i.session: i.frame for i in self.sessions if i.frame is not None}

    def provenance(self) -> dict[str, object]:
        """What each file of this build is stamped with (read back by Storage.provenance)."""
        return {"code_version": code_version(), "source": self.source, "params": self.params}


def _each(
    sessions: list[dt.date], build_one: Callable[[dt.date], SessionFrame]
) -> Iterator[SessionFrame]:
    """``build_one`` per session, lazily; a session with a gated upstream comes out refused."""
    for session in sessions:
        try:
            yield build_one(session)
        except gates.GatedUpstreamError as exc:
            yield SessionFrame(session, None, refused=str(exc))


def _frames(frames: dict[dt.date, pd.DataFrame]) -> Iterator[SessionFrame]:
    """A ranged read's sessions, each let go once it is handed out."""
    for session in sorted(frames):
        yield SessionFrame(session, frames.pop(session))


def _split_stored(req: BuildRequest, ds: Dataset) -> tuple[list[dt.date], list[dt.date]]:
    """(sessions to download, sessions stored, valid and kept)."""
    if req.refetch:
        return list(req.sessions), []
    # A stored session that failed its gate is fetched again: the source may have corrected it.
    kept = [
        s for s in req.sessions if req.storage.exists(ds, s) and not gates.gated(req.storage, ds, s)
    ]
    return [s for s in req.sessions if s not in kept], kept


# --------------------------------------------------------------------- raw
def underlying_bars(req: BuildRequest, underlying: str, ds: Dataset) -> Built:
    """The underlying's regular-session minute bars: one ranged read for the missing sessions."""
    fetch, kept = _split_stored(req, ds)
    frames: dict[dt.date, pd.DataFrame] = {}
    if fetch:
        bars = req.market.stock_bars(underlying, fetch[0], fetch[-1])
        if bars.empty:
            # SPY-like underlyings trade every session: no bar at all is a ticker the source
            # does not know, not a quiet range. Storing empty sessions would hide it.
            raise UnknownUnderlyingError(
                f"{req.market.name} has no minute bars for {underlying} from {fetch[0]} to "
                f"{fetch[-1]}: check SPY_ASSETS_UNDERLYINGS (is {underlying} a listed ticker?)"
            )
        bars.insert(0, "ticker", underlying.upper())
        frames = ingest.split_sessions(bars, fetch)
    return Built(_frames(frames), req.market.name, reused=kept)


def vix_bars(req: BuildRequest, ds: Dataset) -> Built:
    """``I:VIX`` minute bars: one ranged read for the missing sessions."""
    fetch, kept = _split_stored(req, ds)
    frames: dict[dt.date, pd.DataFrame] = {}
    if fetch:
        frames = ingest.split_sessions(
            req.market.index_bars(VIX_TICKER, fetch[0], fetch[-1]), fetch
        )
    return Built(_frames(frames), req.market.name, reused=kept)


def news_articles(req: BuildRequest, tickers: list[str], ds: Dataset) -> Built:
    """Articles about the underlyings: one ranged read per ticker for the missing sessions."""
    fetch, kept = _split_stored(req, ds)
    frames: dict[dt.date, pd.DataFrame] = {}
    if fetch:
        lo, hi = ingest.news_window(fetch[0])[0], ingest.news_window(fetch[-1])[1]
        articles = pd.concat([req.market.news(t, lo, hi) for t in tickers], ignore_index=True)
        frames = ingest.split_news(articles, fetch)
    return Built(_frames(frames), req.market.name, params={"tickers": list(tickers)}, reused=kept)


def option_contracts(req: BuildRequest, underlying: str, bars: Dataset) -> Built:
    """The contracts picked around each session's open (SPEC §3), by rule or by discovery."""
    sel = req.params.selection

    def build_one(session: dt.date) -> SessionFrame:
        s0 = ingest.opening_price(gates.read_ungated(req.storage, bars, session), session)
        listed = None
        if sel.selection_mode == "discovery":
            expiry = contracts.expiry_for(session, sel.expiry_convention)
            listed = req.market.option_contracts(underlying, session, expiry, s0 * 0.99, s0 * 1.01)
        frame, missing = ingest.contracts_frame(
            underlying,
            session,
            s0,
            sel.strike_increment,
            sel.strikes_per_side,
            sel.expiry_convention,
            listed,
        )
        if missing:
            req.warn(f"{session}: strikes {missing} are not listed by the vendor")
            return SessionFrame(session, frame, facts={"unlisted_strikes": missing})
        return SessionFrame(session, frame)

    return Built(_each(req.sessions, build_one), req.market.name, params=as_dict(sel))


def option_bars(req: BuildRequest, contracts_ds: Dataset, ds: Dataset) -> Built:
    """Minute bars of each picked contract, one request per contract-day at most.

    A contract the vendor has no bars for is kept in ``option_contracts`` and reported here; one
    that fails on bad data is skipped and reported. When the vendor refuses the key (401/403),
    no further contract is requested: the sessions completed before are stored, and the result
    carries an :class:`AuthError` so the run fails rather than store sessions without bars.
    """
    fetch, kept = _split_stored(req, ds)
    built = Built(iter(()), req.market.name, reused=kept)

    def produce() -> Iterator[SessionFrame]:
        done = 0
        for session in fetch:
            try:
                stored = gates.read_ungated(req.storage, contracts_ds, session)
            except gates.GatedUpstreamError as exc:
                yield SessionFrame(session, None, refused=str(exc))
                continue
            picked = stored["contract"].astype(str).tolist()
            got = fetch_option_bars(req.market, picked, session, session)
            facts: dict[str, object] = {}
            if got.errors:
                facts["contracts_failed"] = got.errors
                for contract, reason in got.errors.items():
                    req.warn(f"{session} {contract} skipped: {reason}")
            if got.refused:
                built.error = AuthError(
                    f"{got.refused}; option bars from {session} on were not requested "
                    f"({done} earlier session(s) stored)"
                )
                return
            parts, without_bars = [], []
            for contract in picked:
                bars = got.bars.get(contract)
                if bars is None:
                    continue
                bars = ingest.split_sessions(bars, [session])[session]
                if bars.empty:
                    without_bars.append(contract)
                    continue
                bars.insert(0, "contract", contract)
                parts.append(bars)
            if without_bars:
                facts["contracts_without_bars"] = without_bars
            frame = pd.concat(parts, ignore_index=True) if parts else _empty_option_bars()
            done += 1
            yield SessionFrame(session, frame, facts=facts)

    built.sessions = produce()
    return built


def _empty_option_bars() -> pd.DataFrame:
    frame = empty_frame(BAR_COLUMNS)
    frame.insert(0, "contract", pd.Series(dtype="str"))
    return frame


# ----------------------------------------------------------------- derived
def features(
    req: BuildRequest,
    underlying: str,
    contracts_ds: Dataset,
    option_bars_ds: Dataset,
    bars_ds: Dataset,
    vix_ds: Dataset,
    news_ds: Dataset,
) -> Built:
    """One flat row per option per minute: bars, VIX and news as of then, IV, Greeks."""
    pricing = req.params.pricing

    def build_one(session: dt.date) -> SessionFrame:
        def read(ds: Dataset) -> pd.DataFrame:
            return gates.read_ungated(req.storage, ds, session)

        frame = features_core.build_features(
            session,
            read(contracts_ds),
            read(option_bars_ds),
            read(bars_ds),
            read(vix_ds),
            read(news_ds),
            underlying=underlying,
            rate=pricing.rate,
            div_yield=pricing.dividend_yield,
        )
        counts = {str(k): int(v) for k, v in frame["iv_status"].value_counts().items()}
        return SessionFrame(session, frame, facts={"iv_status_counts": counts})

    return Built(_each(req.sessions, build_one), "derived", params=as_dict(pricing))


def scan_events(req: BuildRequest, features_ds: Dataset) -> Built:
    """Runs of closes at or above (1 + θ) × the session's lowest earlier close (SPEC §5).

    A run never crosses sessions, so each session is scanned on its own; the report over the
    run's sessions is made from the bars' four columns it needs, kept as the sessions go.
    """
    threshold = req.params.scan.threshold
    built = Built(iter(()), "derived", params=as_dict(req.params.scan))
    bars_seen: list[pd.DataFrame] = []
    events_seen: list[pd.DataFrame] = []

    def build_one(session: dt.date) -> SessionFrame:
        stored = gates.read_ungated(req.storage, features_ds, session)
        stored.insert(0, "session", session)
        bars = _bars_for_scan(stored)
        del stored
        events = scanner.scan_events(bars, threshold=threshold)
        bars_seen.append(bars)
        events_seen.append(events)
        return SessionFrame(session, events.drop(columns="session"), facts={"events": len(events)})

    def produce() -> Iterator[SessionFrame]:
        yield from _each(req.sessions, build_one)
        bars = _concat_or_empty(bars_seen, _bars_for_scan(pd.DataFrame()))
        events = _concat_or_empty(events_seen, scanner.scan_events(bars.iloc[:0], threshold))
        report = scanner.scan_report(bars, events, threshold=threshold)
        built.facts["events"] = len(events)
        built.markdown["scan_report"] = report.to_markdown()

    built.sessions = produce()
    return built


def _concat_or_empty(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty


def _bars_for_scan(stored: pd.DataFrame) -> pd.DataFrame:
    columns = ["contract", "session", "timestamp", "close"]
    if stored.empty:
        return pd.DataFrame(
            {
                "contract": pd.Series(dtype=str),
                "session": pd.Series(dtype=object),
                "timestamp": pd.Series(dtype="datetime64[ms, UTC]"),
                "close": pd.Series(dtype=float),
            }
        )
    return stored[columns]


def training_data(req: BuildRequest, features_ds: Dataset) -> Built:
    """Feature rows with ``target_*`` columns; contract-days under the coverage dropped."""
    tp = req.params.training

    def build_one(session: dt.date) -> SessionFrame:
        result = training.build_training_data(
            gates.read_ungated(req.storage, features_ds, session),
            session,
            horizons=tp.horizons,
            max_return_horizon=tp.max_return_horizon,
            min_coverage=tp.min_coverage,
        )
        facts = {"contract_days_dropped": result.dropped_contract_days}
        return SessionFrame(session, result.frame, facts=facts)

    return Built(_each(req.sessions, build_one), "derived", params=as_dict(tp))
