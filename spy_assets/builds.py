"""How each dataset is built for a run's sessions: one function per dataset, no Dagster.

Every function takes a :class:`BuildRequest` (the sessions, where stored data lives, the market
source, the parameters) and returns a :class:`Built`: a frame per session to store, the
parameters it actually used, and the facts worth reporting. The Dagster assets call exactly one
of these and store the frames; the data flows source → raw Parquet → features → events.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from spy_assets import contracts, ingest
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
class Built:
    """A build's output: frames to store per session, and what made them."""

    frames: dict[dt.date, pd.DataFrame]
    source: str
    params: dict[str, object] = field(default_factory=dict)
    #: Sessions already stored and valid, kept as they are (no request made).
    reused: list[dt.date] = field(default_factory=list)
    #: JSON-able facts for the materialization's metadata (skips, unlisted strikes, counts).
    facts: dict[str, object] = field(default_factory=dict)
    #: Markdown for the materialization's metadata (the scan report).
    markdown: dict[str, str] = field(default_factory=dict)
    #: Set when the build stopped early: the frames above are complete sessions to store, and
    #: then the run must fail with this error.
    error: Exception | None = None
    #: Sessions the build stored itself (the live fold, which must read, merge and write under
    #: one lock); they are reported with the frames' writes.
    written: dict[dt.date, WriteResult] = field(default_factory=dict)

    def provenance(self) -> dict[str, object]:
        """What each file of this build is stamped with (read back by Storage.provenance)."""
        return {"code_version": code_version(), "source": self.source, "params": self.params}


def _split_stored(req: BuildRequest, ds: Dataset) -> tuple[list[dt.date], list[dt.date]]:
    """(sessions to download, sessions stored, valid and kept)."""
    if req.refetch:
        return list(req.sessions), []
    kept = [s for s in req.sessions if req.storage.exists(ds, s)]
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
    return Built(frames, req.market.name, reused=kept)


def vix_bars(req: BuildRequest, ds: Dataset) -> Built:
    """``I:VIX`` minute bars: one ranged read for the missing sessions."""
    fetch, kept = _split_stored(req, ds)
    frames: dict[dt.date, pd.DataFrame] = {}
    if fetch:
        frames = ingest.split_sessions(
            req.market.index_bars(VIX_TICKER, fetch[0], fetch[-1]), fetch
        )
    return Built(frames, req.market.name, reused=kept)


def news_articles(req: BuildRequest, tickers: list[str], ds: Dataset) -> Built:
    """Articles about the underlyings: one ranged read per ticker for the missing sessions."""
    fetch, kept = _split_stored(req, ds)
    frames: dict[dt.date, pd.DataFrame] = {}
    if fetch:
        lo, hi = ingest.news_window(fetch[0])[0], ingest.news_window(fetch[-1])[1]
        articles = pd.concat([req.market.news(t, lo, hi) for t in tickers], ignore_index=True)
        frames = ingest.split_news(articles, fetch)
    return Built(frames, req.market.name, params={"tickers": list(tickers)}, reused=kept)


def option_contracts(req: BuildRequest, underlying: str, bars: Dataset) -> Built:
    """The contracts picked around each session's open (SPEC §3), by rule or by discovery."""
    sel = req.params.selection
    frames, unlisted = {}, {}
    for session in req.sessions:
        s0 = ingest.opening_price(req.storage.read(bars, session), session)
        listed = None
        if sel.selection_mode == "discovery":
            expiry = contracts.expiry_for(session, sel.expiry_convention)
            listed = req.market.option_contracts(underlying, session, expiry, s0 * 0.99, s0 * 1.01)
        frames[session], missing = ingest.contracts_frame(
            underlying,
            session,
            s0,
            sel.strike_increment,
            sel.strikes_per_side,
            sel.expiry_convention,
            listed,
        )
        if missing:
            unlisted[str(session)] = missing
            req.warn(f"{session}: strikes {missing} are not listed by the vendor")
    facts: dict[str, object] = {"unlisted_strikes": unlisted} if unlisted else {}
    return Built(frames, req.market.name, params=as_dict(sel), facts=facts)


def option_bars(req: BuildRequest, contracts_ds: Dataset, ds: Dataset) -> Built:
    """Minute bars of each picked contract, one request per contract-day at most.

    A contract the vendor has no bars for is kept in ``option_contracts`` and reported here; one
    that fails on bad data is skipped and reported. When the vendor refuses the key (401/403),
    no further contract is requested: the sessions completed before are stored, and the result
    carries an :class:`AuthError` so the run fails rather than store sessions without bars.
    """
    fetch, kept = _split_stored(req, ds)
    frames: dict[dt.date, pd.DataFrame] = {}
    without_bars: dict[str, list[str]] = {}
    failed: dict[str, dict[str, str]] = {}

    def _facts() -> dict[str, object]:
        return {"contracts_without_bars": without_bars, "contracts_failed": failed}

    for session in fetch:
        picked = req.storage.read(contracts_ds, session)["contract"].astype(str).tolist()
        got = fetch_option_bars(req.market, picked, session, session)
        if got.errors:
            failed[str(session)] = got.errors
            for contract, reason in got.errors.items():
                req.warn(f"{session} {contract} skipped: {reason}")
        if got.refused:
            error = AuthError(
                f"{got.refused}; option bars from {session} on were not requested "
                f"({len(frames)} earlier session(s) stored)"
            )
            return Built(frames, req.market.name, reused=kept, facts=_facts(), error=error)
        parts = []
        for contract in picked:
            bars = got.bars.get(contract)
            if bars is None:
                continue
            bars = ingest.split_sessions(bars, [session])[session]
            if bars.empty:
                without_bars.setdefault(str(session), []).append(contract)
                continue
            bars.insert(0, "contract", contract)
            parts.append(bars)
        frames[session] = pd.concat(parts, ignore_index=True) if parts else _empty_option_bars()
    return Built(frames, req.market.name, reused=kept, facts=_facts())


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
    frames, statuses = {}, {}
    read = req.storage.read
    for session in req.sessions:
        frame = features_core.build_features(
            session,
            read(contracts_ds, session),
            read(option_bars_ds, session),
            read(bars_ds, session),
            read(vix_ds, session),
            read(news_ds, session),
            underlying=underlying,
            rate=pricing.rate,
            div_yield=pricing.dividend_yield,
        )
        frames[session] = frame
        for status, count in frame["iv_status"].value_counts().items():
            statuses[str(status)] = statuses.get(str(status), 0) + int(count)
    return Built(frames, "derived", params=as_dict(pricing), facts={"iv_status_counts": statuses})


def scan_events(req: BuildRequest, features_ds: Dataset) -> Built:
    """Runs of closes at or above (1 + θ) × the session's lowest earlier close (SPEC §5)."""
    threshold = req.params.scan.threshold
    stored = req.storage.read_sessions(features_ds, req.sessions)
    bars = _bars_for_scan(stored)
    events = scanner.scan_events(bars, threshold=threshold)
    frames = {s: events[events["session"] == s].drop(columns="session") for s in req.sessions}
    report = scanner.scan_report(bars, events, threshold=threshold)
    return Built(
        frames,
        "derived",
        params=as_dict(req.params.scan),
        facts={"events": len(events)},
        markdown={"scan_report": report.to_markdown()},
    )


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
    frames, dropped = {}, {}
    for session in req.sessions:
        result = training.build_training_data(
            req.storage.read(features_ds, session),
            session,
            horizons=tp.horizons,
            max_return_horizon=tp.max_return_horizon,
            min_coverage=tp.min_coverage,
        )
        frames[session] = result.frame
        dropped[str(session)] = result.dropped_contract_days
    return Built(frames, "derived", params=as_dict(tp), facts={"contract_days_dropped": dropped})
