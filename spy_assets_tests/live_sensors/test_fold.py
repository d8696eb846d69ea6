"""The fold on its own (no Dagster): real landed Parquet batches, real partitions, the synthetic
market as the REST source for gap repair."""

import datetime as dt
import hashlib

import pandas as pd

from spy_assets import calendar, ingest
from spy_assets.builds import BuildRequest
from spy_assets.landing import LandingZone
from spy_assets.live.fold import fold, fold_state
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import Storage, dataset

SESSION = dt.date(2025, 11, 26)
SPY = dataset("SPY", "minute_bars")


def _minute(hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"{SESSION} {hhmm}", tz=calendar.MARKET_TZ).tz_convert("UTC")


def test_fold_repairs_the_gap_keeps_landed_rows_and_is_idempotent(tmp_path):
    market = SyntheticMarket()
    rest = ingest.split_sessions(market.stock_bars("SPY", SESSION, SESSION), [SESSION])[SESSION]
    rest.insert(0, "ticker", "SPY")
    # The socket's aggregates carry no trade count; the stream was down 09:40-09:44; one
    # pre-market bar slipped in; every row comes twice.
    stream = rest[rest["timestamp"] < _minute("10:00")].drop(columns="transactions")
    down = (stream["timestamp"] >= _minute("09:40")) & (stream["timestamp"] < _minute("09:45"))
    stream = stream[~down]
    early = stream.head(1).assign(timestamp=_minute("09:00"))
    zone = LandingZone.under(tmp_path)
    zone.write_batch(SPY, SESSION, pd.concat([early, stream.iloc[::-1]]))
    zone.write_batch(SPY, SESSION, stream.tail(10).assign(received_at=pd.Timestamp.now(tz="UTC")))
    store = Storage(tmp_path)
    request = BuildRequest(sessions=[SESSION], storage=store, source=market, warn=lambda m: None)
    through = zone.batches()[-1].name

    built = fold(SPY, request, zone, through)

    assert built.facts["gap_minutes_repaired"] == 5
    assert built.facts["rows_outside_session"] == 1
    assert built.facts["transactions_unknown"] == len(stream) + 10
    assert built.facts["bars_new"] == 25 and built.facts["batches_folded"] == 2
    bars = store.read(SPY, SESSION)
    assert bars["timestamp"].tolist() == list(calendar.session_minutes(SESSION)[:30])
    repaired = bars["timestamp"].between(_minute("09:40"), _minute("09:44"))
    expected = rest[rest["timestamp"].between(_minute("09:40"), _minute("09:44"))]
    assert bars.loc[repaired, "transactions"].tolist() == expected["transactions"].tolist()
    assert (bars.loc[~repaired, "transactions"] == 0).all()
    assert store.provenance(SPY, SESSION)["source"] == "landing+synthetic"
    state = fold_state(zone, SPY, SESSION)
    assert state.landing_through == through and state.gaps_checked_through == _minute("09:59")
    digest = hashlib.sha256(store.partition_path(SPY, SESSION).read_bytes()).hexdigest()

    # Nothing new: nothing written, no request made.
    requests = market.stats.requests
    again = fold(SPY, request, zone, through)
    assert again.written == {} and again.reused == [SESSION]
    assert market.stats.requests == requests
    # A crash between the partition and its state: the same batches fold to the same bytes.
    (zone.root / ".fold" / "spy" / "minute_bars" / f"session={SESSION}.json").unlink()
    refold = fold(SPY, request, zone, through)
    assert refold.facts["bars_new"] == 0 and refold.facts["bars_updated"] == 0
    assert hashlib.sha256(store.partition_path(SPY, SESSION).read_bytes()).hexdigest() == digest
