"""The interface every market-data source implements: the synthetic market and the vendor.

Assets read through this interface only, so they never know which source they read.
All frames use the column sets below; timestamps are bar *starts*, ``timestamp[ms, UTC]``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pandas as pd

#: Stock and option minute aggregates (the vendor's o,h,l,c,v,vw,t,n).
BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "vwap", "transactions"]
#: Index aggregates (``I:VIX``): o,h,l,c only.
INDEX_BAR_COLUMNS = ["timestamp", "open", "high", "low", "close"]
#: Listed option contracts (discovery through the reference API).
CONTRACT_COLUMNS = ["contract", "underlying", "contract_type", "strike", "expiration"]
#: News articles; ``sentiment_json`` maps ticker → +1/0/−1 from the vendor's ``insights``.
NEWS_COLUMNS = [
    "article_id",
    "published_utc",
    "publisher",
    "title",
    "article_url",
    "tickers",
    "sentiment_json",
]


@dataclass
class RequestStats:
    """What a source did on the wire; the assets copy it into their metadata."""

    requests: int = 0
    retries: int = 0
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, int]:
        return {"api_requests": self.requests, "retries": self.retries, "skipped": self.skipped}


@runtime_checkable
class MarketSource(Protocol):
    """A source of raw market data for a range of sessions.

    Ranged methods take the first and last session (inclusive) and return every bar in that
    span, extended hours included when the source has them; callers split the frame into
    sessions. A minute with no trade has no bar.
    """

    name: str
    stats: RequestStats

    def stock_bars(self, ticker: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        """Minute bars of a stock or ETF: :data:`BAR_COLUMNS`."""
        ...

    def index_bars(self, ticker: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        """Minute bars of an index such as ``I:VIX``: :data:`INDEX_BAR_COLUMNS`."""
        ...

    def option_bars(self, contract: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        """Minute bars of one option contract: :data:`BAR_COLUMNS`."""
        ...

    def option_contracts(
        self,
        underlying: str,
        as_of: dt.date,
        expiration: dt.date,
        strike_min: float,
        strike_max: float,
    ) -> pd.DataFrame:
        """Contracts listed on ``as_of`` (expired ones included) for one expiry and strike band:
        :data:`CONTRACT_COLUMNS`."""
        ...

    def news(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Articles about ``ticker`` published in [start, end): :data:`NEWS_COLUMNS`."""
        ...


def empty_frame(columns: list[str]) -> pd.DataFrame:
    """An empty frame with the project's dtypes for a column set."""
    dtypes = {
        "timestamp": "datetime64[ms, UTC]",
        "published_utc": "datetime64[ms, UTC]",
        "volume": "float64",
        "transactions": "Int64",
        "strike": "float64",
    }
    return pd.DataFrame(
        {
            c: pd.Series(
                dtype=dtypes.get(
                    c, "float64" if c in {"open", "high", "low", "close", "vwap"} else "object"
                )
            )
            for c in columns
        }
    )
