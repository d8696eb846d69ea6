"""MassiveSource through the real ``massive`` client against the local vendor server."""

from __future__ import annotations

import datetime as dt
import logging
import math

import pandas as pd
import pytest
from massive import RESTClient
from pandas.testing import assert_frame_equal

from spy_assets.contracts import build_ticker
from spy_assets.errors import AuthError, SkippableError
from spy_assets.sources.base import BAR_COLUMNS, MarketSource
from spy_assets.sources.ratelimit import TokenBucket
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.sources.vendor import MassiveSource, VendorUnavailableError, _retry_after
from spy_assets_tests.conftest import VENDOR_KEY
from spy_assets_tests.test_ratelimit import FakeClock
from spy_assets_tests.vendor_server import VendorServer

KEY = VENDOR_KEY
FIRST, LAST = dt.date(2025, 3, 3), dt.date(2025, 3, 31)
DAY = dt.date(2025, 3, 3)


class Sleeps(list):
    """Records the retry waits instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_source(server, key=KEY, **kwargs):
    options = dict(
        requests_per_minute=None,
        read_timeout=2.0,
        backoff_base=0.01,
        backoff_max=0.05,
        sleep=Sleeps(),
        bucket=TokenBucket(None),
        seed=1,
    )
    options.update(kwargs)
    return MassiveSource(key, server.base_url, **options)


def _open(market, day):
    bars = market.stock_bars("SPY", day, day)
    regular = bars[bars["timestamp"] >= pd.Timestamp(f"{day} 14:30", tz="UTC")]
    return float(regular["open"].iloc[0])


def _contracts(market):
    """A 0DTE call and put at the money, a far (sparsely traded) put, and a weekly call."""
    s0 = _open(market, DAY)
    return [
        build_ticker("SPY", DAY, "call", math.ceil(s0)),
        build_ticker("SPY", DAY, "put", math.floor(s0)),
        build_ticker("SPY", DAY, "put", math.floor(s0 * 0.97)),
        build_ticker("SPY", dt.date(2025, 3, 7), "call", math.ceil(s0) + 2),
    ]


def _synthetic_news(market, start, end):
    frame = market.news("SPY", start, end)
    frame["published_utc"] = frame["published_utc"].astype("datetime64[ms, UTC]")
    return frame


# ---------------------------------------------------------------- equality
def test_a_month_over_http_equals_the_synthetic_market(server, market):
    source = make_source(server)
    assert isinstance(source, MarketSource) and source.name == "massive"

    assert_frame_equal(source.stock_bars("SPY", FIRST, LAST), market.stock_bars("SPY", FIRST, LAST))
    assert_frame_equal(
        source.index_bars("I:VIX", FIRST, LAST), market.index_bars("I:VIX", FIRST, LAST)
    )
    for contract in _contracts(market):
        assert_frame_equal(
            source.option_bars(contract, FIRST, LAST), market.option_bars(contract, FIRST, LAST)
        )
    s0 = _open(market, DAY)
    assert_frame_equal(
        source.option_contracts("SPY", DAY, DAY, s0 * 0.99, s0 * 1.01),
        market.option_contracts("SPY", DAY, DAY, s0 * 0.99, s0 * 1.01),
    )
    start, end = pd.Timestamp("2025-03-03", tz="UTC"), pd.Timestamp("2025-04-01", tz="UTC")
    news = source.news("SPY", start, end)
    assert_frame_equal(news, _synthetic_news(market, start, end))
    assert news["sentiment_json"].str.startswith("{").all() and len(news) > 100

    # Ranged: SPY and VIX in a few pages (not one request per session), one per option range.
    spy, vix = server.requests_for("/SPY/range"), server.requests_for("/I:VIX/")
    assert len(spy) == math.ceil(len(market.stock_bars("SPY", FIRST, LAST)) / 5000) < 21
    assert len(vix) == math.ceil(21 * 390 / 5000)
    assert all(len(server.requests_for(c)) == 1 for c in _contracts(market))
    assert all(r.key_in_header and not r.key_in_query for r in server.requests)
    assert source.stats.requests == len(server.requests) == source.bucket.acquired
    assert source.stats.retries == 0 and source.stats.skipped == 0


def test_pagination_follows_next_url_across_many_pages(market):
    with VendorServer(market, api_key=KEY, page_size=700) as server:
        source = make_source(server)
        bars = source.stock_bars("SPY", FIRST, dt.date(2025, 3, 14))
        assert_frame_equal(bars, market.stock_bars("SPY", FIRST, dt.date(2025, 3, 14)))
        pages = server.requests
        assert len(pages) == math.ceil(len(bars) / 700) >= 8
        assert pages[0].params == {"sort": "asc", "limit": "50000"}
        assert all(set(p.params) == {"cursor"} for p in pages[1:])
        assert source.stats.requests == len(pages)

        # Reference endpoints page too (limit honoured below the server's page size).
        start, end = pd.Timestamp("2025-03-03", tz="UTC"), pd.Timestamp("2025-03-31", tz="UTC")
        server.reset()
        server.page_size = 25
        assert_frame_equal(source.news("SPY", start, end), _synthetic_news(market, start, end))
        assert len(server.requests) > 3
        server.reset()
        s0 = _open(market, DAY)
        contracts = source.option_contracts("SPY", DAY, DAY, s0 - 20, s0 + 20)
        assert len(contracts) > 50 and len(server.requests) == math.ceil(len(contracts) / 25)


def test_empty_ranges_and_missing_fields(server, market):
    source = make_source(server)
    frame = source.index_bars("I:SPX", FIRST, FIRST)  # the server has no such index
    assert list(frame.columns) == ["timestamp", "open", "high", "low", "close"] and frame.empty
    # An expired contract asked for after its expiry costs no request.
    before = len(server.requests)
    late = source.option_bars(_contracts(market)[0], dt.date(2025, 3, 4), dt.date(2025, 3, 5))
    assert late.empty and list(late.columns) == BAR_COLUMNS and len(server.requests) == before
    assert str(late["transactions"].dtype) == "Int64"


# ------------------------------------------------------------------ faults
def test_faults_are_retried_to_complete_data(market):
    with VendorServer(market, api_key=KEY, page_size=2000) as server:

        def read_all(source):
            return [
                source.stock_bars("SPY", FIRST, LAST),
                source.index_bars("I:VIX", FIRST, LAST),
                *(source.option_bars(c, DAY, DAY) for c in _contracts(market)[:2]),
            ]

        # Built once before the faults: a cold page may take longer than the short read
        # timeout below, and only the scheduled faults may cost a retry.
        read_all(make_source(server))
        server.reset()
        server.add_fault("429", every=5, retry_after=2)
        server.add_fault("503", every=5, offset=2, retry_after=None)
        server.add_fault("slow", nth=3, delay=1.0)
        server.add_fault("truncated", nth=9)
        server.add_fault("reset", nth=14)
        source = make_source(server, read_timeout=0.4, max_attempts=4)

        expected = [
            market.stock_bars("SPY", FIRST, LAST),
            market.index_bars("I:VIX", FIRST, LAST),
            *(market.option_bars(c, DAY, DAY) for c in _contracts(market)[:2]),
        ]
        for got, want in zip(read_all(source), expected, strict=True):
            assert_frame_equal(got, want)

        fired = [r.fault for r in server.requests if r.fault]
        assert {"429", "503", "slow", "truncated", "reset"} <= set(fired)
        assert source.stats.retries == len(fired)
        assert source.stats.requests == len(server.requests)
        assert source.stats.skipped == 0
        # Each 429 said Retry-After: 2, and the client waited at least that long.
        assert sum(s >= 2.0 for s in source._sleep) == fired.count("429")


def test_retry_after_is_honoured_and_capped(server):
    server.add_fault("429", nth=1, retry_after=7)
    server.add_fault("429", nth=2, retry_after=500)
    source = make_source(server, max_retry_after=30)
    source.stock_bars("SPY", DAY, DAY)
    assert source._sleep == pytest.approx([7.0, 30.0])
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert _retry_after("soon") is None


def test_backoff_is_exponential_jittered_and_capped(server):
    server.add_fault("503", retry_after=None)
    source = make_source(server, max_attempts=6, backoff_base=1.0, backoff_max=4.0)
    with pytest.raises(VendorUnavailableError, match="gave up after 6 attempt"):
        source.stock_bars("SPY", DAY, DAY)
    assert len(server.requests) == 6 and source.stats.retries == 5
    for wait, ceiling in zip(source._sleep, [1, 2, 4, 4, 4], strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_401_is_not_retried(server, caplog):
    source = make_source(server, key="not-the-key")
    with caplog.at_level(logging.WARNING), pytest.raises(AuthError, match="HTTP 401"):
        source.stock_bars("SPY", DAY, DAY)
    assert [r.status for r in server.requests] == [401]
    assert source.stats.retries == 0 and source.stats.skipped == 1
    assert "HTTP 401" in source.stats.skip_reasons[0]
    assert any(r.levelno == logging.WARNING and "refused" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("bad_field", "bad_value", "says"),
    [
        ("c", None, "no numeric close"),
        ("o", "n/a", "no numeric open"),
        ("t", None, "no usable timestamp"),
    ],
)
def test_one_malformed_bar_is_dropped_and_the_rest_kept(market, caplog, bad_field, bad_value, says):
    options = {} if bad_value is None else {"bad_value": bad_value}
    with VendorServer(market, api_key=KEY, page_size=2000) as server:
        # The 8th bar of the second page of a month of SPY is broken; the page is otherwise good.
        server.add_fault("malformed", nth=2, bad_field=bad_field, bad_at=7, **options)
        source = make_source(server)
        with caplog.at_level(logging.WARNING):
            bars = source.stock_bars("SPY", FIRST, LAST)
        expected = market.stock_bars("SPY", FIRST, LAST)
        assert_frame_equal(bars, expected.drop(index=2007).reset_index(drop=True))
        # Counted once, logged, never retried.
        assert source.stats.skipped == 1 and source.stats.retries == 0
        assert len(server.requests) == math.ceil(len(expected) / 2000)
        (reason,) = source.stats.skip_reasons
        assert reason.startswith("SPY minute bar") and says in reason
        if bad_field != "t":
            assert expected["timestamp"].iloc[2007].isoformat() in reason
        assert any("dropped 1 malformed bar" in r.getMessage() for r in caplog.records)


def test_a_malformed_index_bar_is_dropped(server, market):
    server.add_fault("malformed", match="I:VIX", bad_field="h", bad_value="high")
    source = make_source(server)
    vix = source.index_bars("I:VIX", DAY, DAY)
    assert_frame_equal(vix, market.index_bars("I:VIX", DAY, DAY).iloc[1:].reset_index(drop=True))
    assert source.stats.skipped == 1 and "I:VIX minute bar at" in source.stats.skip_reasons[0]


def test_each_malformed_bar_is_counted_across_pages(market):
    with VendorServer(market, api_key=KEY, page_size=50) as server:
        server.add_fault("malformed", bad_field="t", bad_value="later", bad_at=-1)
        source = make_source(server)
        vix = source.index_bars("I:VIX", DAY, DAY)
        expected = market.index_bars("I:VIX", DAY, DAY)
        lost = [i for i in range(len(expected)) if i % 50 == 49 or i == len(expected) - 1]
        assert_frame_equal(vix, expected.drop(index=lost).reset_index(drop=True))
        assert source.stats.skipped == len(lost) == server.request_count == 8
        assert all("no usable timestamp: 'later'" in r for r in source.stats.skip_reasons)


def test_http_errors_are_skippable_and_not_retried(server):
    server.add_fault("404")
    source = make_source(server)
    with pytest.raises(SkippableError, match="HTTP 404"):
        source.index_bars("I:VIX", DAY, DAY)
    assert len(server.requests) == 1 and source.stats.retries == 0
    assert source.stats.skipped == 1


def test_a_malformed_contract_is_dropped_from_the_listing(server, market):
    server.add_fault("malformed", match="/v3/reference/options/contracts", bad_at=2)
    s0 = _open(market, DAY)
    source = make_source(server)
    found = source.option_contracts("SPY", DAY, DAY, s0 - 3, s0 + 3)
    listed = market.option_contracts("SPY", DAY, DAY, s0 - 3, s0 + 3)
    # The server sorts by ticker; our frame by type and strike.
    lost = sorted(listed["contract"])[2]
    assert_frame_equal(found, listed[listed["contract"] != lost].reset_index(drop=True))
    assert source.stats.skipped == 1 and "contract None dropped" in source.stats.skip_reasons[0]


def test_each_article_without_id_or_time_is_counted(market):
    with VendorServer(market, api_key=KEY, page_size=25) as server:
        server.add_fault("malformed", match="/v2/reference/news", nth=1, bad_at=3)
        server.add_fault(
            "malformed", nth=2, bad_field="published_utc", bad_value="not a time", bad_at=0
        )
        source = make_source(server)
        start, end = pd.Timestamp("2025-03-03", tz="UTC"), pd.Timestamp("2025-03-17", tz="UTC")
        news = source.news("SPY", start, end)
        expected = _synthetic_news(market, start, end)
        assert_frame_equal(news, expected.drop(index=[3, 25]).reset_index(drop=True))
        assert source.stats.skipped == 2
        no_id, no_time = source.stats.skip_reasons
        assert "no usable id" in no_id and expected["article_url"].iloc[3] in no_id
        assert expected["article_id"].iloc[25] in no_time and "'not a time'" in no_time


# --------------------------------------------------------------- contracts
def test_contracts_for_a_past_session_use_as_of(server, market):
    s0 = _open(market, DAY)
    source = make_source(server, today=lambda: dt.date(2026, 1, 15))
    found = source.option_contracts("SPY", DAY, DAY, s0 * 0.99, s0 * 1.01)
    assert_frame_equal(found, market.option_contracts("SPY", DAY, DAY, s0 * 0.99, s0 * 1.01))
    (request,) = server.requests
    assert request.params["as_of"] == "2025-03-03"
    assert request.params["expired"] == "true"
    assert request.params["expiration_date"] == "2025-03-03"

    # Without as_of (and expired) the vendor does not find a past session's contracts.
    client = RESTClient(api_key=KEY, base=server.base_url, retries=0)
    assert list(client.list_options_contracts(underlying_ticker="SPY", expiration_date=DAY)) == []


def test_contracts_fall_back_to_the_other_expired_flag(market):
    # A vendor that judges "expired" against another date than ours: one extra request.
    with VendorServer(market, api_key=KEY, today=dt.date(2025, 1, 2)) as server:
        s0 = _open(market, DAY)
        source = make_source(server, today=lambda: dt.date(2026, 1, 15))
        found = source.option_contracts("SPY", DAY, DAY, s0 - 2, s0 + 2)
        assert_frame_equal(found, market.option_contracts("SPY", DAY, DAY, s0 - 2, s0 + 2))
        assert [r.params["expired"] for r in server.requests] == ["true", "false"]


# ------------------------------------------------------ rate limit, config
def test_each_request_takes_a_token_at_the_plan_rate():
    clock = FakeClock()
    bucket = TokenBucket(5, clock=clock, sleep=clock.sleep)
    with VendorServer(SyntheticMarket(), api_key=KEY, page_size=100) as paged:
        source = make_source(paged, bucket=bucket)
        source.stock_bars("SPY", DAY, DAY)
        n = len(paged.requests)
    assert n > 3 and bucket.acquired == n == source.stats.requests
    assert clock.now - 1000.0 == pytest.approx(12.0 * (n - 1))  # 5 a minute


def test_sources_with_one_key_share_one_bucket(server):
    a = MassiveSource(KEY, server.base_url, requests_per_minute=5)
    b = MassiveSource(KEY, server.base_url, requests_per_minute=5)
    c = MassiveSource("another-key", server.base_url, requests_per_minute=5)
    assert a.bucket is b.bucket and a.bucket is not c.bucket
    assert a.bucket.rate_per_minute == 5 and a.bucket.burst == 1


def test_from_env_reads_either_variable(server, monkeypatch):
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    monkeypatch.delenv("MASSIVE_BASE_URL", raising=False)
    with pytest.raises(AuthError, match="MASSIVE_API_KEY or POLYGON_API_KEY"):
        MassiveSource.from_env()
    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    monkeypatch.setenv("MASSIVE_BASE_URL", server.base_url)
    source = MassiveSource.from_env(requests_per_minute=None)
    assert source.base_url == server.base_url
    assert len(source.index_bars("VIX", DAY, DAY)) == 390
    monkeypatch.setenv("MASSIVE_API_KEY", "the-preferred-key")
    preferred = MassiveSource.from_env(requests_per_minute=None)
    with pytest.raises(AuthError):  # the server only knows KEY: MASSIVE_API_KEY won
        preferred.index_bars("VIX", DAY, DAY)
