"""The interface every market-data source implements: the synthetic market and the vendor.

Assets read through this interface only, so they never know which source they read.
All frames use the column sets below; timestamps are bar *starts*, ``timestamp[ms, UTC]``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pandas as pd

from spy_assets.contracts import parse_ticker
from spy_assets.errors import AuthError, SkippableError

logger = logging.getLogger(__name__)

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
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def record_skip(self, reason: str) -> None:
        """Count one skipped item (a read, a bar, a contract, an article); the caller logs it."""
        with self._lock:
            self.skipped += 1
            self.skip_reasons.append(reason)

    def as_metadata(self) -> dict[str, int]:
        return {"api_requests": self.requests, "retries": self.retries, "skipped": self.skipped}


@runtime_checkable
class MarketSource(Protocol):
    """A source of raw market data for a range of sessions.

    Ranged methods take the first and last session (inclusive) and return every bar in that
    span, extended hours included when the source has them; callers split the frame into
    sessions. A minute with no trade has no bar.

    Errors: :class:`~spy_assets.errors.SkippableError` for a problem with one read (logged and
    counted in ``stats`` by the source, never retried); :class:`~spy_assets.errors.AuthError`
    when the vendor refuses the key (counted too); anything else means the source itself is
    unavailable and the run must fail. A malformed bar, contract or article inside an otherwise
    good answer is dropped and counted in ``stats``, and the rest is returned.
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


#: The reason recorded for contracts left alone after the vendor refused the key.
NOT_REQUESTED = "not requested: the vendor refused the API key"


@dataclass
class ContractBars:
    """What :func:`fetch_option_bars` got: bars per contract, and why the others have none.

    ``bars`` and ``errors`` follow the callers' order and never share a contract; together they
    hold every contract asked for. An empty frame in ``bars`` is a contract that did not trade.
    ``refused`` is the vendor's refusal (401/403) when it happened, else ``None``.
    """

    bars: dict[str, pd.DataFrame] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    refused: str | None = None

    @property
    def ok(self) -> list[str]:
        """Contracts that came back (with or without bars)."""
        return list(self.bars)

    @property
    def complete(self) -> bool:
        """Every contract came back."""
        return not self.errors


def fetch_option_bars(
    source: MarketSource, contracts: Sequence[str], first: dt.date, last: dt.date
) -> ContractBars:
    """Minute bars of each option contract from ``first`` to ``last``: the one place that loops
    over contracts, for the assets, the tests and the request benchmark.

    Each distinct contract is requested at most once, in the order given. A contract that fails
    with :class:`~spy_assets.errors.SkippableError` (a 404, bad data, a ticker that does not
    parse) goes to ``errors`` and the others go on. A 401/403
    (:class:`~spy_assets.errors.AuthError`) goes to ``errors``, sets ``refused``, and no further
    contract is requested, so a bad key cannot lock the account: each remaining contract is
    recorded in ``errors`` as :data:`NOT_REQUESTED` and counted once in ``source.stats.skipped``.
    Anything else — notably the vendor being unavailable after every retry, or refusing
    connections — propagates: the run must fail rather than store sessions without bars.

    Callers store each session whose loop finished, reporting the contracts in ``errors`` (a
    skip is data the vendor does not have or sent broken; ``refetch`` asks again). When
    ``refused`` is set they store nothing of that session and stop, then fail the run with
    an error carrying it, so a refused key never reports success.
    """
    result = ContractBars()
    pending = list(dict.fromkeys(contracts))
    for i, contract in enumerate(pending):
        try:
            parse_ticker(contract)
        except ValueError as exc:
            result.errors[contract] = str(exc)
            source.stats.record_skip(f"{contract} minute bars: {exc}")
            logger.warning("skipped %s minute bars: %s", contract, exc)
            continue
        try:
            result.bars[contract] = source.option_bars(contract, first, last)
        except SkippableError as exc:  # logged and counted by the source
            result.errors[contract] = str(exc)
        except AuthError as exc:  # counted by the source
            result.errors[contract] = result.refused = str(exc)
            rest = pending[i + 1 :]
            for other in rest:
                result.errors[other] = NOT_REQUESTED
                source.stats.record_skip(f"{other} minute bars: {NOT_REQUESTED}")
            if rest:
                logger.warning(
                    "the vendor refused the API key: %d more contract(s) not requested", len(rest)
                )
            break
    return result
