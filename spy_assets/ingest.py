"""Raw-layer logic the assets call: split ranged fetches into sessions, pick contracts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from spy_assets import calendar, contracts
from spy_assets.errors import SkippableError


def split_sessions(
    bars: pd.DataFrame, sessions: Sequence[dt.date], extended: bool = False
) -> dict[dt.date, pd.DataFrame]:
    """The bars of each session (regular hours unless ``extended``), keyed by session."""
    out = {}
    for session in sessions:
        lo, hi = calendar.window_utc(session, extended=extended)
        mask = (bars["timestamp"] >= lo) & (bars["timestamp"] < hi)
        out[session] = bars.loc[mask].reset_index(drop=True)
    return out


def split_news(articles: pd.DataFrame, sessions: Sequence[dt.date]) -> dict[dt.date, pd.DataFrame]:
    """Each session owns the articles published from the previous session's close to its own."""
    out = {}
    for session in sessions:
        lo, hi = news_window(session)
        mask = (articles["published_utc"] >= lo) & (articles["published_utc"] < hi)
        out[session] = articles.loc[mask].reset_index(drop=True)
    return out


def news_window(session: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    return calendar.session_close(calendar.previous_session(session)), calendar.session_close(
        session
    )


def opening_price(bars: pd.DataFrame, session: dt.date) -> float:
    """S0: the open of the first regular-session bar."""
    lo, hi = calendar.window_utc(session)
    regular = bars[(bars["timestamp"] >= lo) & (bars["timestamp"] < hi)]
    if regular.empty:
        raise SkippableError(f"no regular-session bar on {session}: no opening price")
    return float(regular.sort_values("timestamp")["open"].iloc[0])


CONTRACT_FRAME_COLUMNS = [
    "contract",
    "underlying",
    "contract_type",
    "strike",
    "expiration",
    "underlying_open",
    "strike_increment",
    "strikes_per_side",
    "expiry_convention",
    "selection_mode",
]


def contracts_frame(
    underlying: str,
    session: dt.date,
    open_price: float,
    increment: float,
    per_side: int,
    convention: str,
    listed: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[float]]:
    """The contracts picked for a session, and the wanted strikes the vendor does not list.

    Without ``listed`` the SPEC §3 rule builds the tickers; with it (discovery mode, the
    reference API's contracts within ±1% of the open) the rule's strikes are matched against
    what is listed, with a one-cent tolerance.
    """
    picked = contracts.select_contracts(
        underlying, session, open_price, increment, per_side, convention
    )
    rows, unlisted = [], []
    for c in picked:
        ticker = c.ticker
        if listed is not None:
            same = listed[listed["contract_type"] == c.contract_type]
            hits = same[(same["strike"] - c.strike).abs() < contracts.STRIKE_TOLERANCE]
            if hits.empty:
                unlisted.append(c.strike)
                continue
            ticker = str(hits["contract"].iloc[0])
        rows.append(
            {
                "contract": ticker,
                "underlying": c.underlying,
                "contract_type": c.contract_type,
                "strike": c.strike,
                "expiration": c.expiration,
                "underlying_open": open_price,
                "strike_increment": increment,
                "strikes_per_side": per_side,
                "expiry_convention": str(convention),
                "selection_mode": "discovery" if listed is not None else "rule",
            }
        )
    return pd.DataFrame(rows, columns=CONTRACT_FRAME_COLUMNS), unlisted
