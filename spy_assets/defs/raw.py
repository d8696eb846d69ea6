"""Raw assets: underlying minute bars, option contracts and their bars, VIX, news."""

import datetime as dt
from collections.abc import Callable

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from spy_assets import ingest, schemas
from spy_assets.defs.common import (
    Timer,
    run_sessions,
    schema_check,
    session_asset,
    store_sessions,
)
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.errors import AuthError, SkippableError
from spy_assets.sources.base import MarketSource
from spy_assets.storage import NEWS_ARTICLES, VIX_MINUTE_BARS, Dataset, Storage, dataset

VIX_TICKER = "I:VIX"


class IngestConfig(Config):
    refetch: bool = Field(
        default=False,
        description="Download sessions that are already stored again (vendor corrections). "
        "Off: stored sessions are kept and cost no request.",
    )


def _to_fetch(
    storage: Storage, ds: Dataset, sessions: list[dt.date], refetch: bool
) -> tuple[list[dt.date], list[dt.date]]:
    """(sessions to download, sessions already stored and kept)."""
    if refetch:
        return sessions, []
    stored = [s for s in sessions if storage.exists(ds, s)]
    return [s for s in sessions if s not in stored], stored


def _ingest_missing(
    context: AssetExecutionContext,
    config: IngestConfig,
    storage: StorageResource,
    market: MarketDataResource,
    ds: Dataset,
    read: Callable[[MarketSource, list[dt.date]], dict[dt.date, pd.DataFrame]],
    **store_kwargs: object,
) -> MaterializeResult:
    """Read the run's sessions that are not stored yet (all of them with ``refetch``) in one
    call of ``read``, and store them session by session."""
    timer, store, source = Timer(), storage.get(), market.build()
    fetch, kept = _to_fetch(store, ds, run_sessions(context), config.refetch)
    frames = read(source, fetch) if fetch else {}
    return store_sessions(
        context,
        store,
        ds,
        frames,
        source=source.name,
        timer=timer,
        stats=source.stats,
        reused=kept,
        **store_kwargs,
    )


def underlying_assets(underlying: str) -> list[object]:
    """The raw assets and checks of one underlying, under the key prefix ``<underlying>``."""
    prefix = underlying.lower()
    bars_ds = dataset(underlying, "minute_bars")
    contracts_ds = dataset(underlying, "option_contracts")
    option_bars_ds = dataset(underlying, "option_minute_bars")

    @session_asset(
        AssetKey([prefix, "minute_bars"]),
        group="raw",
        calls_vendor=True,
        description=f"{underlying} regular-session minute bars (o,h,l,c,v,vw,n), one request "
        "per run for the whole range of sessions.",
    )
    def minute_bars(
        context: AssetExecutionContext,
        config: IngestConfig,
        storage: StorageResource,
        market: MarketDataResource,
    ) -> MaterializeResult:
        def read(source: MarketSource, fetch: list[dt.date]) -> dict[dt.date, pd.DataFrame]:
            bars = source.stock_bars(underlying, fetch[0], fetch[-1])
            bars.insert(0, "ticker", underlying.upper())
            return ingest.split_sessions(bars, fetch)

        return _ingest_missing(context, config, storage, market, bars_ds, read)

    @session_asset(
        AssetKey([prefix, "option_contracts"]),
        group="raw",
        deps=[minute_bars],
        calls_vendor=True,
        description="Contracts picked around the session's open (SPEC §3): calls strictly above "
        "and puts strictly below, n strikes a side, one expiry.",
    )
    def option_contracts(
        context: AssetExecutionContext,
        storage: StorageResource,
        market: MarketDataResource,
        settings: ResearchSettings,
    ) -> MaterializeResult:
        timer, store, source = Timer(), storage.get(), market.build()
        params = {
            "strike_increment": settings.strike_increment,
            "strikes_per_side": settings.strikes_per_side,
            "expiry_convention": settings.expiry_convention,
            "selection_mode": settings.selection_mode,
        }
        frames, unlisted = {}, {}
        for session in run_sessions(context):
            s0 = ingest.opening_price(store.read(bars_ds, session), session)
            listed = None
            if settings.selection_mode == "discovery":
                from spy_assets.contracts import expiry_for

                listed = source.option_contracts(
                    underlying,
                    session,
                    expiry_for(session, settings.expiry_convention),
                    s0 * 0.99,
                    s0 * 1.01,
                )
            frames[session], missing = ingest.contracts_frame(
                underlying,
                session,
                s0,
                settings.strike_increment,
                settings.strikes_per_side,
                settings.expiry_convention,
                listed,
            )
            if missing:
                unlisted[str(session)] = missing
                context.log.warning(f"{session}: strikes {missing} are not listed by the vendor")
        extra = {"unlisted_strikes": MetadataValue.json(unlisted)} if unlisted else {}
        return store_sessions(
            context,
            store,
            contracts_ds,
            frames,
            source=source.name,
            timer=timer,
            stats=source.stats,
            params=params,
            extra=extra,
        )

    @session_asset(
        AssetKey([prefix, "option_minute_bars"]),
        group="raw",
        deps=[option_contracts],
        calls_vendor=True,
        description="Minute bars of each picked contract, one request per contract-day at most. "
        "A contract with no bars is kept in option_contracts and reported here.",
    )
    def option_minute_bars(
        context: AssetExecutionContext,
        config: IngestConfig,
        storage: StorageResource,
        market: MarketDataResource,
    ) -> MaterializeResult:
        timer, store, source = Timer(), storage.get(), market.build()
        fetch, kept = _to_fetch(store, option_bars_ds, run_sessions(context), config.refetch)
        frames, without_bars, failed = {}, {}, {}
        for session in fetch:
            picked = store.read(contracts_ds, session)
            parts = []
            for contract in picked["contract"]:
                try:
                    bars = source.option_bars(contract, session, session)
                except (SkippableError, AuthError) as exc:
                    failed.setdefault(str(session), {})[contract] = str(exc)
                    context.log.warning(f"{session} {contract} skipped: {exc}")
                    continue
                bars = ingest.split_sessions(bars, [session])[session]
                if bars.empty:
                    without_bars.setdefault(str(session), []).append(contract)
                    continue
                bars.insert(0, "contract", contract)
                parts.append(bars)
            frames[session] = pd.concat(parts, ignore_index=True) if parts else _empty_option_bars()
        extra = {
            "contracts_without_bars": MetadataValue.json(without_bars),
            "contracts_failed": MetadataValue.json(failed),
        }
        return store_sessions(
            context,
            store,
            option_bars_ds,
            frames,
            source=source.name,
            timer=timer,
            stats=source.stats,
            extra=extra,
            reused=kept,
        )

    return [
        minute_bars,
        option_contracts,
        option_minute_bars,
        schema_check(
            minute_bars,
            bars_ds,
            schemas.minute_bars_schema,
            "Regular-session bars: positive prices, high/low coherent, unique minutes.",
        ),
        schema_check(
            option_contracts,
            contracts_ds,
            schemas.option_contracts_schema,
            "Valid O: tickers, call/put, positive strikes, unexpired, unique.",
        ),
        schema_check(
            option_minute_bars,
            option_bars_ds,
            schemas.option_bars_schema,
            "Option bars inside the session, coherent prices, unique per minute.",
        ),
    ]


def _empty_option_bars() -> pd.DataFrame:
    from spy_assets.sources.base import BAR_COLUMNS, empty_frame

    frame = empty_frame(BAR_COLUMNS)
    frame.insert(0, "contract", pd.Series(dtype="str"))
    return frame


@session_asset(
    AssetKey(["vix", "minute_bars"]),
    group="raw",
    calls_vendor=True,
    description="I:VIX minute bars (o,h,l,c only, like the vendor's index aggregates).",
)
def vix_minute_bars(
    context: AssetExecutionContext,
    config: IngestConfig,
    storage: StorageResource,
    market: MarketDataResource,
) -> MaterializeResult:
    def read(source: MarketSource, fetch: list[dt.date]) -> dict[dt.date, pd.DataFrame]:
        return ingest.split_sessions(source.index_bars(VIX_TICKER, fetch[0], fetch[-1]), fetch)

    return _ingest_missing(context, config, storage, market, VIX_MINUTE_BARS, read)


def news_asset(tickers: list[str]) -> AssetsDefinition:
    @session_asset(
        AssetKey(["news", "articles"]),
        group="raw",
        calls_vendor=True,
        description="News about the underlyings: each session owns the articles published from "
        "the previous session's close to its own close; sentiment per ticker from insights.",
    )
    def news_articles(
        context: AssetExecutionContext,
        config: IngestConfig,
        storage: StorageResource,
        market: MarketDataResource,
    ) -> MaterializeResult:
        def read(source: MarketSource, fetch: list[dt.date]) -> dict[dt.date, pd.DataFrame]:
            lo, hi = ingest.news_window(fetch[0])[0], ingest.news_window(fetch[-1])[1]
            articles = pd.concat([source.news(t, lo, hi) for t in tickers], ignore_index=True)
            return ingest.split_news(articles, fetch)

        return _ingest_missing(
            context, config, storage, market, NEWS_ARTICLES, read, params={"tickers": tickers}
        )

    return news_articles


def shared_assets(tickers: list[str]) -> list[object]:
    news_articles = news_asset(tickers)
    return [
        vix_minute_bars,
        news_articles,
        schema_check(
            vix_minute_bars,
            VIX_MINUTE_BARS,
            schemas.vix_bars_schema,
            "VIX bars inside the session, coherent prices, unique per minute.",
        ),
        schema_check(
            news_articles,
            NEWS_ARTICLES,
            schemas.news_schema,
            "Articles inside the session's news window, unique ids.",
        ),
    ]
