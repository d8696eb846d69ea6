"""How many vendor requests a full year costs, fetched as ranged requests.

Runs ``MassiveSource`` (the real ``massive`` client) against the local vendor server with an
unlimited bucket, for the 2025 sessions: SPY minute bars and VIX as one ranged, paginated read
each; option bars for 4 0DTE contracts a day (2 calls above, 2 puts below the open), one read per
contract-day; plus news and the optional contract discovery. Prints the counts and what they
would take at the free tier's 5 requests a minute.

    uv run python benchmarks/vendor_requests.py
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spy_assets import calendar  # noqa: E402
from spy_assets.contracts import select_contracts  # noqa: E402
from spy_assets.sources.ratelimit import TokenBucket  # noqa: E402
from spy_assets.sources.synthetic import SyntheticMarket  # noqa: E402
from spy_assets.sources.vendor import MassiveSource  # noqa: E402
from spy_assets_tests.vendor_server import VendorServer  # noqa: E402

FREE_TIER_PER_MINUTE = 5
KEY = "benchmark-key"


def _duration(requests: int) -> str:
    minutes = requests / FREE_TIER_PER_MINUTE
    return f"{minutes:,.1f} min" if minutes < 120 else f"{minutes / 60:,.1f} h"


def main() -> None:
    first, last = dt.date(2025, 1, 1), dt.date(2025, 12, 31)
    sessions = calendar.sessions_between(first, last)
    market = SyntheticMarket()
    started = time.perf_counter()
    rows: list[tuple[str, int, int, str]] = []
    with VendorServer(market, api_key=KEY) as server:
        source = MassiveSource(
            KEY, server.base_url, requests_per_minute=None, bucket=TokenBucket(None)
        )

        def count(label: str, read) -> object:
            before = source.stats.requests
            result = read()
            n = source.stats.requests - before
            bars = getattr(result, "bars", None)
            size = sum(len(f) for f in bars.values()) if bars is not None else len(result)
            rows.append((label, n, size, _duration(n)))
            return result

        spy = count(
            "SPY minute bars (1 ranged read)",
            lambda: source.stock_bars("SPY", sessions[0], sessions[-1]),
        )
        count(
            "VIX minute bars (1 ranged read)",
            lambda: source.index_bars("I:VIX", sessions[0], sessions[-1]),
        )

        # The open of each session's first regular bar picks that day's contracts (SPEC §3).
        regular = spy[
            spy["timestamp"].isin(pd.DatetimeIndex([calendar.session_open(s) for s in sessions]))
        ]
        opens = dict(
            zip(
                [t.tz_convert(calendar.MARKET_TZ).date() for t in regular["timestamp"]],
                regular["open"],
                strict=True,
            )
        )
        contract_days = [
            (c.ticker, s) for s in sessions for c in select_contracts("SPY", s, opens[s])
        ]

        def option_reads():
            total = None
            for session in sessions:
                day = [c for c, s in contract_days if s == session]
                batch = source.option_bars_many(day, session, session)
                if total is None:
                    total = batch
                else:
                    total.bars.update(batch.bars)
                    total.errors.update(batch.errors)
            return total

        options = count(f"option bars ({len(contract_days)} contract-days, 0DTE)", option_reads)
        count(
            "news (1 ranged read)",
            lambda: source.news(
                "SPY",
                calendar.session_open(sessions[0]) - pd.Timedelta(days=1),
                calendar.session_close(sessions[-1]),
            ),
        )
        count(
            "contract discovery, optional (1 per session)",
            lambda: pd.concat(
                [
                    source.option_contracts("SPY", s, s, opens[s] * 0.99, opens[s] * 1.01)
                    for s in sessions
                ]
            ),
        )
        server_seen = len(server.requests)
    elapsed = time.perf_counter() - started

    print(f"{len(sessions)} sessions of 2025, local vendor server, unlimited bucket\n")
    print(f"{'read':<48}{'requests':>10}{'rows':>12}   at {FREE_TIER_PER_MINUTE}/min")
    for label, n, size, duration in rows:
        print(f"{label:<48}{n:>10,}{size:>12,}   {duration}")
    required = sum(n for label, n, _, _ in rows if "optional" not in label)
    print(f"{'total without discovery':<48}{required:>10,}{'':>12}   {_duration(required)}")
    per_session = 2 * len(sessions) + len(contract_days)
    print(
        f"\nper-session reads instead (SPY + VIX + options): {per_session:,} requests, "
        f"{_duration(per_session)}"
    )
    print(
        f"option contract-days with errors: {len(options.errors)}; "
        f"server saw {server_seen:,} requests; retries {source.stats.retries}; "
        f"ran in {elapsed:.1f} s"
    )
    assert server_seen == source.stats.requests
    assert rows[0][1] == math.ceil(rows[0][2] / 50_000) and rows[1][1] <= 3


if __name__ == "__main__":
    main()
