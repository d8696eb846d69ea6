import datetime as dt

import pandas as pd

from spy_assets.landing import LandingZone
from spy_assets.storage import VIX_MINUTE_BARS, dataset

SESSION = dt.date(2025, 11, 26)


def _bars(minutes):
    ts = pd.to_datetime([f"2025-11-26 14:{m:02d}" for m in minutes], utc=True)
    return pd.DataFrame({"ticker": "SPY", "timestamp": ts, "close": [float(m) for m in minutes]})


def test_batches_come_back_in_write_order_and_resume_after_a_cursor(tmp_path):
    zone = LandingZone.under(tmp_path)
    spy = dataset("SPY", "minute_bars")
    first = zone.write_batch(spy, SESSION, _bars([31, 32]))
    zone.write_batch(VIX_MINUTE_BARS, SESSION, _bars([31]).drop(columns="ticker"))
    zone.write_batch(spy, SESSION, _bars([33]))
    every = zone.batches()
    assert [b.dataset for b in every] == ["spy/minute_bars", "vix/minute_bars", "spy/minute_bars"]
    assert first.stat().st_mode & 0o777 == 0o644
    later = zone.batches(after=first.name)
    assert [b.dataset for b in later] == ["vix/minute_bars", "spy/minute_bars"]
    rows = zone.read(zone.batches([spy], session=SESSION))
    assert rows["close"].tolist() == [31.0, 32.0, 33.0]
    assert zone.sessions(spy) == [SESSION]
    assert not list(tmp_path.rglob("*.tmp"))
