"""The table of datasets: what each one is, its key, schema, group, upstreams and its build.

The Dagster layer turns each row into an asset and its blocking schema check; the catalog has one
view per row. Adding a dataset is adding a row here and a build function in ``builds.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandera.pandas as pa

from spy_assets import builds, schemas
from spy_assets.builds import BuildRequest, Built
from spy_assets.storage import NEWS_ARTICLES, VIX_MINUTE_BARS, Dataset, dataset

RAW, ANALYTICS = "raw", "analytics"


@dataclass(frozen=True)
class DatasetSpec:
    """One stored dataset, partitioned by session."""

    dataset: Dataset
    group: str
    description: str
    schema: Callable[[dt.date], pa.DataFrameSchema]
    check_description: str
    build: Callable[[BuildRequest], Built]
    deps: tuple[str, ...] = ()
    #: Reads the market source (so it runs in the vendor pool and may be refetched).
    calls_vendor: bool = False

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def grain(self) -> str:
        return "(" + ", ".join(self.dataset.key) + ")"


def underlying_datasets(underlying: str) -> list[DatasetSpec]:
    """The datasets of one underlying, upstream first."""
    u = underlying.upper()
    ds = {
        kind: dataset(u, kind)
        for kind in (
            "minute_bars",
            "option_contracts",
            "option_minute_bars",
            "features",
            "scan_events",
            "training_data",
        )
    }
    return [
        DatasetSpec(
            ds["minute_bars"],
            RAW,
            f"{u} regular-session minute bars (o,h,l,c,v,vw,n), one request per run for the "
            "whole range of sessions.",
            schemas.minute_bars_schema,
            "Regular-session bars: positive prices, high/low coherent, unique minutes.",
            lambda req: builds.underlying_bars(req, u, ds["minute_bars"]),
            calls_vendor=True,
        ),
        DatasetSpec(
            ds["option_contracts"],
            RAW,
            "Contracts picked around the session's open (SPEC §3): calls strictly above and "
            "puts strictly below, n strikes a side, one expiry.",
            schemas.option_contracts_schema,
            "Valid O: tickers, call/put, positive strikes, unexpired, unique.",
            lambda req: builds.option_contracts(req, u, ds["minute_bars"]),
            deps=(ds["minute_bars"].name,),
            calls_vendor=True,
        ),
        DatasetSpec(
            ds["option_minute_bars"],
            RAW,
            "Minute bars of each picked contract, one request per contract-day at most. A "
            "contract with no bars is kept in option_contracts and reported here.",
            schemas.option_bars_schema,
            "Option bars inside the session, coherent prices, unique per minute.",
            lambda req: builds.option_bars(req, ds["option_contracts"], ds["option_minute_bars"]),
            deps=(ds["option_contracts"].name,),
            calls_vendor=True,
        ),
        DatasetSpec(
            ds["features"],
            ANALYTICS,
            "One flat row per option per minute: the option bar, the underlying's bar, VIX and "
            "news as of that minute, IV and Greeks, indicators. No look-ahead.",
            schemas.features_schema,
            "Feature rows inside the session, IV ≥ 0 or NaN with a reason, |delta| ≤ 1.",
            lambda req: builds.features(
                req,
                u,
                ds["option_contracts"],
                ds["option_minute_bars"],
                ds["minute_bars"],
                VIX_MINUTE_BARS,
                NEWS_ARTICLES,
            ),
            deps=(
                ds["option_minute_bars"].name,
                ds["minute_bars"].name,
                ds["option_contracts"].name,
                VIX_MINUTE_BARS.name,
                NEWS_ARTICLES.name,
            ),
        ),
        DatasetSpec(
            ds["scan_events"],
            ANALYTICS,
            "Runs of minute closes at or above (1 + θ) × the lowest earlier close of the "
            "contract's session; the scan report is in the metadata.",
            schemas.scan_events_schema,
            "Events meet the threshold, peaks at or above triggers, unique triggers.",
            lambda req: builds.scan_events(req, ds["features"]),
            deps=(ds["features"].name,),
        ),
        DatasetSpec(
            ds["training_data"],
            ANALYTICS,
            "Feature rows with target_* columns (+5/+15/+30-minute closes, 30-minute max "
            "return), NaN past the session's end; contract-days under 80% coverage dropped.",
            schemas.training_data_schema,
            "Training rows inside the session, targets positive or NaN.",
            lambda req: builds.training_data(req, ds["features"]),
            deps=(ds["features"].name,),
        ),
    ]


def shared_datasets(underlyings: Sequence[str]) -> list[DatasetSpec]:
    """VIX and news: one of each, whatever the underlyings."""
    tickers = [u.upper() for u in underlyings]
    return [
        DatasetSpec(
            VIX_MINUTE_BARS,
            RAW,
            "I:VIX minute bars (o,h,l,c only, like the vendor's index aggregates).",
            schemas.vix_bars_schema,
            "VIX bars inside the session, coherent prices, unique per minute.",
            lambda req: builds.vix_bars(req, VIX_MINUTE_BARS),
            calls_vendor=True,
        ),
        DatasetSpec(
            NEWS_ARTICLES,
            RAW,
            "News about the underlyings: each session owns the articles published from the "
            "previous session's close to its own close; sentiment per ticker from insights.",
            schemas.news_schema,
            "Articles inside the session's news window, unique ids.",
            lambda req: builds.news_articles(req, tickers, NEWS_ARTICLES),
            calls_vendor=True,
        ),
    ]


def all_datasets(underlyings: Sequence[str]) -> list[DatasetSpec]:
    """Every dataset of a configuration, upstream first."""
    specs = shared_datasets(underlyings)
    for underlying in underlyings:
        specs += underlying_datasets(underlying)
    return specs
