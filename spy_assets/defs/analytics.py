"""Derived assets: features (IV, Greeks, indicators), scan events with the report, training data."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
)

from spy_assets import schemas
from spy_assets.analytics.features import build_features
from spy_assets.analytics.scanner import scan_events, scan_report
from spy_assets.analytics.training import build_training_data
from spy_assets.defs.common import (
    Timer,
    run_sessions,
    schema_check,
    session_asset,
    store_sessions,
)
from spy_assets.defs.resources import ResearchSettings, StorageResource
from spy_assets.storage import NEWS_ARTICLES, VIX_MINUTE_BARS, dataset


def analytics_assets(underlying: str) -> list[object]:
    """Features, scan events and training data of one underlying."""
    prefix = underlying.lower()
    ds = {
        kind: dataset(underlying, kind)
        for kind in (
            "minute_bars",
            "option_contracts",
            "option_minute_bars",
            "features",
            "scan_events",
            "training_data",
        )
    }

    @session_asset(
        AssetKey([prefix, "features"]),
        group="analytics",
        deps=[
            AssetKey([prefix, "option_minute_bars"]),
            AssetKey([prefix, "minute_bars"]),
            AssetKey([prefix, "option_contracts"]),
            AssetKey(["vix", "minute_bars"]),
            AssetKey(["news", "articles"]),
        ],
        description="One flat row per option per minute: the option bar, the underlying's bar, "
        "VIX and news as of that minute, IV and Greeks, indicators. No look-ahead.",
    )
    def features(
        context: AssetExecutionContext, storage: StorageResource, settings: ResearchSettings
    ) -> MaterializeResult:
        timer, store = Timer(), storage.get()
        params = {"rate": settings.rate, "dividend_yield": settings.dividend_yield}
        frames, statuses = {}, {}
        for session in run_sessions(context):
            frame = build_features(
                session,
                store.read(ds["option_contracts"], session),
                store.read(ds["option_minute_bars"], session),
                store.read(ds["minute_bars"], session),
                store.read(VIX_MINUTE_BARS, session),
                store.read(NEWS_ARTICLES, session),
                underlying=underlying,
                rate=settings.rate,
                div_yield=settings.dividend_yield,
            )
            frames[session] = frame
            for status, count in frame["iv_status"].value_counts().items():
                statuses[status] = statuses.get(status, 0) + int(count)
        return store_sessions(
            context,
            store,
            ds["features"],
            frames,
            source="derived",
            timer=timer,
            params=params,
            extra={"iv_status_counts": MetadataValue.json(statuses)},
        )

    @session_asset(
        AssetKey([prefix, "scan_events"]),
        group="analytics",
        deps=[features],
        description="Runs of minute closes at or above (1 + θ) × the lowest earlier close of the "
        "contract's session; the scan report is in the metadata.",
    )
    def scan_events_asset(
        context: AssetExecutionContext, storage: StorageResource, settings: ResearchSettings
    ) -> MaterializeResult:
        timer, store = Timer(), storage.get()
        sessions = run_sessions(context)
        bars = _bars_for_scan(store.read_sessions(ds["features"], sessions))
        events = scan_events(bars, threshold=settings.scan_threshold)
        frames = {s: events[events["session"] == s].drop(columns="session") for s in sessions}
        report = scan_report(bars, events, threshold=settings.scan_threshold)
        return store_sessions(
            context,
            store,
            ds["scan_events"],
            frames,
            source="derived",
            timer=timer,
            params={"threshold": settings.scan_threshold},
            extra={"scan_report": MetadataValue.md(report.to_markdown()), "events": len(events)},
        )

    @session_asset(
        AssetKey([prefix, "training_data"]),
        group="analytics",
        deps=[features],
        description="Feature rows with target_* columns (+5/+15/+30-minute closes, 30-minute max "
        "return), NaN past the session's end; contract-days under 80% coverage dropped.",
    )
    def training_data(
        context: AssetExecutionContext, storage: StorageResource
    ) -> MaterializeResult:
        timer, store = Timer(), storage.get()
        params = {"horizons": [5, 15, 30], "max_return_horizon": 30, "min_coverage": 0.8}
        frames, dropped = {}, {}
        for session in run_sessions(context):
            result = build_training_data(store.read(ds["features"], session), session)
            frames[session] = result.frame
            dropped[str(session)] = result.dropped_contract_days
        return store_sessions(
            context,
            store,
            ds["training_data"],
            frames,
            source="derived",
            timer=timer,
            params=params,
            extra={"contract_days_dropped": MetadataValue.json(dropped)},
        )

    return [
        features,
        scan_events_asset,
        training_data,
        schema_check(
            features,
            ds["features"],
            schemas.features_schema,
            "Feature rows inside the session, IV ≥ 0 or NaN with a reason, |delta| ≤ 1.",
        ),
        schema_check(
            scan_events_asset,
            ds["scan_events"],
            schemas.scan_events_schema,
            "Events meet the threshold, peaks at or above triggers, unique triggers.",
        ),
        schema_check(
            training_data,
            ds["training_data"],
            schemas.training_data_schema,
            "Training rows inside the session, targets positive or NaN.",
        ),
    ]


def _bars_for_scan(features: pd.DataFrame) -> pd.DataFrame:
    if features.empty:
        return pd.DataFrame(
            {
                "contract": pd.Series(dtype=str),
                "session": pd.Series(dtype=object),
                "timestamp": pd.Series(dtype="datetime64[ms, UTC]"),
                "close": pd.Series(dtype=float),
            }
        )
    return features[["contract", "session", "timestamp", "close"]]
