"""What counts as drift: optional fields, nulls, integers and floats, nested fields."""

import datetime as dt

from spy_assets.quality import drift

DAY = dt.date(2025, 11, 26)


def _schema(*items):
    recorder = drift.SchemaRecorder()
    recorder.observe(items, lambda item: DAY)
    return recorder.schemas()[DAY]


def test_optional_fields_nulls_and_numbers_are_not_drift():
    baseline = _schema(
        {"id": "a", "amp_url": "u", "v": 100, "publisher": {"name": "P"}, "insights": []},
        {"id": "b", "v": 100.5, "publisher": {"name": "Q"}, "insights": [{"ticker": "SPY"}]},
    )
    assert baseline.optional == {"amp_url"}
    assert baseline.fields["v"] == "number" and baseline.fields["insights[].ticker"] == "string"
    today = _schema({"id": "c", "v": None, "publisher": {"name": "R"}, "insights": []})
    assert drift.diff(baseline, today) == []  # no amp_url, v null, no insights today


def test_new_missing_and_retyped_fields_name_both_types():
    baseline = _schema({"id": "a", "v": 1, "publisher": {"name": "P", "logo": "l"}})
    today = _schema({"id": 7, "publisher": {"name": "P"}, "otc": True})
    assert [str(d) for d in drift.diff(baseline, today)] == [
        "retyped field id: string → number",
        "new field otc (boolean; baseline: absent)",
        "missing field publisher.logo (baseline: string; now absent)",
        "missing field v (baseline: number; now absent)",
    ]


def test_recorded_schemas_group_sessions_in_the_metadata():
    recorder = drift.SchemaRecorder()
    bars = [{"t": 1764167400000 + i * 60_000, "c": 1.5} for i in range(3)]  # 2025-11-26 09:30 ET
    recorder.observe(bars, drift.bar_session)
    recorder.observe([{"t": 1764340200000, "c": "x"}], drift.bar_session)  # 2025-11-28
    groups = recorder.as_metadata()[drift.METADATA_KEY]
    assert [g["sessions"] for g in groups] == [["2025-11-26"], ["2025-11-28"]]
    assert drift.schemas_from_metadata(groups)["2025-11-28"].fields["c"] == "string"
    # An article published after Wednesday's close belongs to Friday (Thursday is a holiday).
    assert drift.news_session({"published_utc": "2025-11-26T21:30:00Z"}) == dt.date(2025, 11, 28)
    assert drift.news_session({"published_utc": "2025-11-26T20:59:00Z"}) == DAY
