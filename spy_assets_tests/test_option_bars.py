"""fetch_option_bars: the one loop over option contracts, against the local vendor server through
the real ``massive`` client, and over the synthetic market."""

from __future__ import annotations

import datetime as dt
import logging
import socket

import pytest
from pandas.testing import assert_frame_equal

from spy_assets.sources.base import NOT_REQUESTED, ContractBars, fetch_option_bars
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.sources.vendor import MassiveSource, VendorUnavailableError
from spy_assets_tests.test_vendor import DAY, KEY, Sleeps, _contracts, make_source

WEEK_END = dt.date(2025, 3, 7)


@pytest.fixture(scope="module")
def contracts(market):
    return _contracts(market)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("status", ["401", "403"])
def test_a_refused_key_stops_after_one_request(server, contracts, caplog, status):
    server.add_fault(status, match="/O:")
    source = make_source(server)
    with caplog.at_level(logging.WARNING):
        result = fetch_option_bars(source, contracts, DAY, DAY)
    assert server.request_count == 1 and len(server.requests_for(contracts[0])) == 1
    assert result.bars == {} and list(result.errors) == contracts
    assert f"HTTP {status}" in result.refused and result.errors[contracts[0]] == result.refused
    assert all(result.errors[c] == NOT_REQUESTED for c in contracts[1:])
    assert not result.complete and source.stats.retries == 0
    # Each contract counted once: the refused read, then each one not requested.
    assert source.stats.skipped == len(contracts) == len(source.stats.skip_reasons)
    assert sum(NOT_REQUESTED in r for r in source.stats.skip_reasons) == len(contracts) - 1
    assert any("3 more contract(s) not requested" in r.getMessage() for r in caplog.records)


def test_a_wrong_key_is_refused_once(server, contracts):
    source = make_source(server, key="not-the-key")
    result = fetch_option_bars(source, contracts, DAY, WEEK_END)
    assert [r.status for r in server.requests] == [401]
    assert "HTTP 401" in result.refused and "not-the-key" not in result.refused
    assert result.bars == {} and len(result.errors) == len(contracts)


def test_a_refusal_in_the_middle_keeps_what_came_before(server, market, contracts):
    server.add_fault("401", match=contracts[2])
    source = make_source(server)
    result = fetch_option_bars(source, contracts, DAY, WEEK_END)
    assert result.ok == contracts[:2]
    for contract in contracts[:2]:
        assert_frame_equal(result.bars[contract], market.option_bars(contract, DAY, WEEK_END))
    assert list(result.errors) == contracts[2:] and "HTTP 401" in result.refused
    assert result.errors[contracts[3]] == NOT_REQUESTED
    assert [len(server.requests_for(c)) for c in contracts] == [1, 1, 1, 0]
    assert server.request_count == 3 and source.stats.skipped == 2


# -------------------------------------------------------------- skips go on
def test_a_missing_or_unparseable_contract_is_skipped_and_the_others_land(
    server, market, contracts
):
    missing, *good = contracts
    bad_ticker = "O:SPY250303X00500000"
    server.add_fault("404", match=missing)
    # One malformed bar costs that bar, not the contract.
    server.add_fault("malformed", match=good[1], bad_at=5)
    source = make_source(server)
    asked = [missing, good[0], bad_ticker, good[0], good[1], good[2], missing]
    result = fetch_option_bars(source, asked, DAY, WEEK_END)

    assert result.refused is None and not result.complete
    assert result.ok == good and list(result.errors) == [missing, bad_ticker]
    assert (
        "HTTP 404" in result.errors[missing] and "not an option ticker" in result.errors[bad_ticker]
    )
    for contract in (good[0], good[2]):
        assert_frame_equal(result.bars[contract], market.option_bars(contract, DAY, WEEK_END))
    expected = market.option_bars(good[1], DAY, WEEK_END).drop(index=5).reset_index(drop=True)
    assert_frame_equal(result.bars[good[1]], expected)
    # Each distinct contract at most once; the unparseable ticker never reaches the server.
    assert [len(server.requests_for(c)) for c in contracts] == [1, 1, 1, 1]
    assert server.request_count == 4 and not server.requests_for("X00500000")
    assert source.stats.skipped == 3  # the 404, the bad ticker, the malformed bar
    assert source.stats.retries == 0


def test_a_contract_without_trades_comes_back_empty(server, contracts):
    expired_already = dt.date(2025, 3, 10)  # after the 0DTE contracts expired: no request
    source = make_source(server)
    result = fetch_option_bars(source, contracts, expired_already, expired_already)
    assert result.complete and result.ok == contracts
    assert all(frame.empty for frame in result.bars.values())
    assert server.request_count == 0


# --------------------------------------------------------- the vendor is down
def test_a_closed_port_fails_the_run(contracts):
    source = MassiveSource(
        KEY,
        f"http://127.0.0.1:{_closed_port()}",
        requests_per_minute=None,
        connect_timeout=0.5,
        max_attempts=2,
        backoff_base=0.01,
        sleep=Sleeps(),
    )
    with pytest.raises(VendorUnavailableError, match="gave up after 2 attempt"):
        fetch_option_bars(source, contracts, DAY, DAY)
    assert source.stats.requests == 2 and source.stats.skipped == 0


def test_a_vendor_that_keeps_failing_fails_the_run(server, contracts):
    server.add_fault("503", match=contracts[1], retry_after=None)
    source = make_source(server, max_attempts=3)
    with pytest.raises(VendorUnavailableError, match="HTTP 503"):
        fetch_option_bars(source, contracts, DAY, DAY)
    assert len(server.requests_for(contracts[1])) == 3
    assert not server.requests_for(contracts[2]) and server.request_count == 4


# ---------------------------------------------------------------- any source
def test_the_synthetic_market_gives_what_option_bars_gives(market, contracts):
    source = SyntheticMarket()
    result = fetch_option_bars(source, [*contracts, contracts[0]], DAY, WEEK_END)
    assert isinstance(result, ContractBars) and result.complete and result.refused is None
    assert result.ok == contracts
    for contract in contracts:
        assert_frame_equal(result.bars[contract], market.option_bars(contract, DAY, WEEK_END))
    assert source.stats.skipped == 0

    broken = fetch_option_bars(source, ["SPY 500 call", contracts[0]], DAY, DAY)
    assert list(broken.errors) == ["SPY 500 call"] and broken.ok == [contracts[0]]
    assert source.stats.skipped == 1
