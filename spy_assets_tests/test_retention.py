"""The retention purge on a data folder with old sessions: a dry run deletes nothing, a real run
deletes only what was consolidated, through the command and the Dagster job."""

import datetime as dt
import json
import os

import pandas as pd
import pytest
from dagster import DagsterInstance

from spy_assets import calendar, cli, datasets
from spy_assets.defs.resources import StorageResource
from spy_assets.defs.schedules import purge_job
from spy_assets.landing import LandingZone
from spy_assets.storage import Storage

SPECS = datasets.all_datasets(["SPY"])
RAW = [s for s in SPECS if s.group == datasets.RAW]
#: Fully built long ago: landing batches, raw partitions, then every derived partition.
CONSOLIDATED = dt.date(2025, 11, 3)
#: Built long ago, but its features are missing (its derived data was not built from it).
NO_FEATURES = dt.date(2025, 11, 4)
#: A late bar landed after its raw partition was written: not consolidated yet.
LATE_BATCH = dt.date(2025, 11, 5)
RETENTION = "landing=10,raw=10"


def _recent():
    return calendar.session_on_or_before(dt.date.today() - dt.timedelta(days=2))


def _write(store, spec, session, at):
    frame = pd.DataFrame({c: ["k"] for c in spec.dataset.key} | {"value": [1.0]})
    path = store.write(spec.dataset, session, frame).path
    os.utime(path, ns=(at, at))
    return path


def _land(zone, name, session, at):
    path = zone.write_batch(name, session, pd.DataFrame({"timestamp": [1], "close": [1.0]}))
    os.utime(path, ns=(at, at))
    return path


@pytest.fixture
def folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    store, zone = Storage(data), LandingZone.under(data)
    t0 = 1_700_000_000 * 10**9
    for session in (CONSOLIDATED, NO_FEATURES, LATE_BATCH, _recent()):
        _land(zone, "spy/minute_bars", session, t0)
        for i, spec in enumerate(SPECS):  # upstream first: each written after its deps
            if session == NO_FEATURES and spec.group == datasets.ANALYTICS:
                continue
            _write(store, spec, session, t0 + (i + 1) * 10**9)
    _land(zone, "spy/minute_bars", LATE_BATCH, t0 + 3600 * 10**9)
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(data))
    monkeypatch.setenv("SPY_ASSETS_RETENTION", RETENTION)
    return data


def _files(data):
    return sorted(p.relative_to(data).as_posix() for p in data.rglob("*.parquet"))


def _listed(out, verb):
    return {
        (line.split()[0], line.split()[1], line.split()[2])
        for line in out.splitlines()
        if line.endswith(verb)
    }


#: (kind, dataset, session) that a purge removes from the folder.
EXPECTED = {("raw", s.name, str(CONSOLIDATED)) for s in RAW} | {
    ("landing", "spy/minute_bars", str(CONSOLIDATED)),
    ("landing", "spy/minute_bars", str(NO_FEATURES)),  # stored in its raw partition
}


def test_dry_run_lists_and_deletes_nothing_then_apply_deletes_only_consolidated(folder, capsys):
    before = _files(folder)
    assert cli.main(["purge"]) == 0
    out = capsys.readouterr().out
    assert _files(folder) == before
    assert _listed(out, "would remove") == EXPECTED
    assert "dry run: would remove 7 dataset-session(s), 7 file(s)" in out
    kept = {
        (line.split()[1], line.split()[2]): line for line in out.splitlines() if "kept:" in line
    }
    assert "features of that session is not stored" in kept[("spy/minute_bars", str(NO_FEATURES))]
    assert "newer than" in kept[("spy/minute_bars", str(LATE_BATCH))]
    assert "newer than" in kept[("vix/minute_bars", str(LATE_BATCH))]  # the whole session stays
    # LATE_BATCH's landing batches, and both sessions' raw partitions
    assert out.count("kept:") == 1 + 2 * len(RAW)

    assert cli.main(["purge", "--apply"]) == 0
    assert _listed(capsys.readouterr().out, "removed") == EXPECTED
    removed = set(before) - set(_files(folder))
    assert len(removed) == 7
    assert all(f"session={CONSOLIDATED}" in p or p.startswith("landing/") for p in removed)
    assert not any(p.startswith("parquet/") and "session=2025-11-0" not in p for p in removed)
    log = [json.loads(line) for line in (folder / "purge.log").read_text().splitlines()]
    assert {(r["kind"], r["dataset"], r["session"]) for r in log} == EXPECTED
    assert sum(len(r["files"]) for r in log) == 7 and all(r["bytes"] > 0 for r in log)

    # what is left is recent or not consolidated: a second purge removes nothing
    after = _files(folder)
    assert cli.main(["purge", "--apply"]) == 0
    assert _files(folder) == after
    assert f"session={_recent()}" in " ".join(after)


def test_the_purge_job_is_a_dry_run_by_default(folder, tmp_path):
    before = _files(folder)
    resources = {"storage": StorageResource(root=str(folder))}
    with DagsterInstance.ephemeral() as instance:
        result = purge_job.execute_in_process(instance=instance, resources=resources)
        assert result.success and _files(folder) == before
        logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
        assert any("dry run: would remove" in m for m in logs)
        config = {
            "ops": {
                "purge_old_data": {"config": {"dry_run": False, "datasets": ["vix/minute_bars"]}}
            }
        }
        result = purge_job.execute_in_process(
            instance=instance, resources=resources, run_config=config
        )
        assert result.success
        for bad, message in [
            ({"datasets": ["spy/bogus"]}, "unknown dataset 'spy/bogus'"),
            ({"session": "2025-11-06"}, "session 2025-11-06 was never built"),
        ]:
            result = purge_job.execute_in_process(
                instance=instance,
                resources=resources,
                run_config={"ops": {"purge_old_data": {"config": bad}}},
                raise_on_error=False,
            )
            [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            assert message in failure.event_specific_data.error.message
    removed = set(before) - set(_files(folder))
    assert removed == {f"parquet/vix/minute_bars/session={CONSOLIDATED}/data.parquet"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["purge", "--dataset", "spy/bogus"], "unknown dataset 'spy/bogus'"),
        (["purge", "--dataset", "spy/features"], "spy/features is derived"),
        (["purge", "--session", "2025-11-06"], "session 2025-11-06 was never built"),
        (["purge", "--session", "2025-11-27"], "not an NYSE trading session"),
    ],
)
def test_bad_purge_input_is_one_line_and_exit_2(folder, capsys, argv, message):
    before = _files(folder)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert _files(folder) == before


def test_bad_retention_setting_is_one_line(folder, capsys, monkeypatch):
    monkeypatch.setenv("SPY_ASSETS_RETENTION", "landing=seven")
    assert cli.main(["purge"]) == 2
    assert "SPY_ASSETS_RETENTION" in capsys.readouterr().err
    monkeypatch.setenv("SPY_ASSETS_RETENTION", "qqq/minute_bars=5")
    assert cli.main(["purge"]) == 2
    assert "unknown dataset 'qqq/minute_bars'" in capsys.readouterr().err


def test_unset_retention_keeps_everything(folder, capsys, monkeypatch):
    monkeypatch.delenv("SPY_ASSETS_RETENTION")
    before = _files(folder)
    assert cli.main(["purge", "--apply"]) == 0
    assert "no retention is configured" in capsys.readouterr().out
    assert _files(folder) == before
