"""How many vendor requests a full year costs, read the way the assets read it.

Runs ``MassiveSource`` (the real ``massive`` client) against the local vendor server with an
unlimited bucket, for the 2025 sessions, making the calls the raw assets make: SPY minute bars
and VIX as one ranged, paginated read each; news as one ranged read over the sessions' news
windows; option bars through :func:`~spy_assets.sources.base.fetch_option_bars` for each
session's picked contracts (SPEC §3 defaults: 2 calls above and 2 puts below the open, 0DTE);
plus the optional contract discovery. Request counts come from the server's own counter.
Prints them, what they would take at the free tier's 5 requests a minute, and how they compare
with reading SPY, VIX and option bars session by session.

    uv run python benchmarks/vendor_requests.py
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spy_assets import calendar, ingest  # noqa: E402
from spy_assets.contracts import expiry_for  # noqa: E402
from spy_assets.sources.base import ContractBars, fetch_option_bars  # noqa: E402
from spy_assets.sources.ratelimit import TokenBucket  # noqa: E402
from spy_assets.sources.synthetic import SyntheticMarket  # noqa: E402
from spy_assets.sources.vendor import MassiveSource  # noqa: E402
from spy_assets_tests.vendor_server import VendorServer  # noqa: E402

FREE_TIER_PER_MINUTE = 5
KEY = "benchmark-key"
UNDERLYING, VIX = "SPY", "I:VIX"
#: ResearchSettings' defaults.
STRIKE_INCREMENT, STRIKES_PER_SIDE, EXPIRY_CONVENTION = 1.0, 2, "0dte"


def _duration(requests: int) -> str:
    minutes = requests / FREE_TIER_PER_MINUTE
    return f"{minutes:,.1f} min" if minutes < 120 else f"{minutes / 60:,.1f} h"


def _size(result: object) -> int:
    if isinstance(result, ContractBars):
        return sum(len(f) for f in result.bars.values())
    return len(result)  # type: ignore[arg-type]


def main() -> None:
    first, last = dt.date(2025, 1, 1), dt.date(2025, 12, 31)
    sessions = calendar.sessions_between(first, last)
    started = time.perf_counter()
    rows: list[tuple[str, int, int]] = []
    with VendorServer(SyntheticMarket(), api_key=KEY) as server:
        source = MassiveSource(
            KEY, server.base_url, requests_per_minute=None, bucket=TokenBucket(None)
        )

        def count(label: str, read: Callable[[], object]) -> object:
            before = server.request_count
            result = read()
            rows.append((label, server.request_count - before, _size(result)))
            return result

        # minute_bars and vix_minute_bars: one ranged read each for the run's sessions.
        spy = count(
            f"{UNDERLYING} minute bars (1 ranged read)",
            lambda: source.stock_bars(UNDERLYING, sessions[0], sessions[-1]),
        )
        count(
            "VIX minute bars (1 ranged read)",
            lambda: source.index_bars(VIX, sessions[0], sessions[-1]),
        )

        # option_contracts: S0 from each stored session of bars, then the SPEC §3 rule.
        days = ingest.split_sessions(spy, sessions)
        opens = {s: ingest.opening_price(days[s], s) for s in sessions}
        picked = {
            s: list(
                ingest.contracts_frame(
                    UNDERLYING,
                    s,
                    opens[s],
                    STRIKE_INCREMENT,
                    STRIKES_PER_SIDE,
                    EXPIRY_CONVENTION,
                )[0]["contract"]
            )
            for s in sessions
        }
        contract_days = sum(len(c) for c in picked.values())

        # option_minute_bars: fetch_option_bars per session, stopping at a refusal.
        def option_reads() -> ContractBars:
            total = ContractBars()
            for session in sessions:
                got = fetch_option_bars(source, picked[session], session, session)
                total.bars.update({(c, session): f for c, f in got.bars.items()})
                total.errors.update({(c, session): e for c, e in got.errors.items()})
                if got.refused:
                    total.refused = got.refused
                    break
            return total

        options = count(f"option bars ({contract_days:,} contract-days, 0DTE)", option_reads)

        # news_articles: one ranged read per ticker over the sessions' news windows.
        count(
            "news (1 ranged read)",
            lambda: source.news(
                UNDERLYING,
                ingest.news_window(sessions[0])[0],
                ingest.news_window(sessions[-1])[1],
            ),
        )
        count(
            "contract discovery, optional (1 per session)",
            lambda: pd.concat(
                [
                    source.option_contracts(
                        UNDERLYING,
                        s,
                        expiry_for(s, EXPIRY_CONVENTION),
                        opens[s] * 0.99,
                        opens[s] * 1.01,
                    )
                    for s in sessions
                ]
            ),
        )
        server_seen = server.request_count
    elapsed = time.perf_counter() - started

    print(f"{len(sessions)} sessions of 2025, local vendor server, unlimited bucket\n")
    print(f"{'read':<48}{'requests':>10}{'rows':>12}   at {FREE_TIER_PER_MINUTE}/min")
    for label, n, size in rows:
        print(f"{label:<48}{n:>10,}{size:>12,}   {_duration(n)}")
    required = sum(n for label, n, _ in rows if "optional" not in label)
    print(f"{'total without discovery':<48}{required:>10,}{'':>12}   {_duration(required)}")
    per_session = 2 * len(sessions) + contract_days
    ranged = sum(n for label, n, _ in rows if "news" not in label and "optional" not in label)
    print(
        f"\nper-session reads instead (SPY + VIX + options): {per_session:,} requests, "
        f"{_duration(per_session)}; ranged: {ranged:,} ({per_session / ranged:.2f}x fewer)"
    )
    print(
        f"option contract-days with errors: {len(options.errors)}; refused: {options.refused}; "
        f"server saw {server_seen:,} requests; client retries {source.stats.retries}, "
        f"skipped {source.stats.skipped}; ran in {elapsed:.1f} s"
    )
    assert server_seen == sum(n for _, n, _ in rows) == source.stats.requests
    assert rows[0][1] == math.ceil(rows[0][2] / 50_000) and rows[1][1] <= 3
    assert options.refused is None and not options.errors


if __name__ == "__main__":
    main()
