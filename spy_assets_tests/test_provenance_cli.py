"""Provenance: code versions per derived dataset, and ``spy-assets provenance`` on bad input (an
unknown dataset, a session that was never built or is not a session: one line naming it, exit 2).
The built case is in integration/test_corrections.py, after a correction."""

import pandas as pd
import pytest
from dagster import DagsterInstance, DefaultSensorStatus

from spy_assets import cli, config
from spy_assets.definitions import build_definitions
from spy_assets.defs.automation import SENSOR_NAME, VENDOR_RETRY_POLICY
from spy_assets.provenance import dataset_code_version, dataset_sources
from spy_assets.storage import Storage, dataset

DERIVED = ["spy/features", "spy/scan_events", "spy/training_data"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    frame = pd.DataFrame({"contract": ["O:SPY251126C00600000"], "timestamp": [1], "x": [1.0]})
    Storage(data).write(dataset("SPY", "features"), pd.Timestamp("2025-11-25").date(), frame)
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(data))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return data


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["provenance", "spy/bogus", "2025-11-26"], "unknown dataset 'spy/bogus'"),
        (["provenance", "qqq/features", "2025-11-26"], "unknown dataset 'qqq/features'"),
        (
            ["provenance", "spy/features", "2025-11-26"],
            "spy/features was never built for session 2025-11-26",
        ),
        (["provenance", "spy/features", "2025-11-27"], "not an NYSE trading session"),
        (["provenance", "spy/features", "26/11/2025"], "is not a date"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(folder, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_partition_without_a_materialization_still_shows_its_file(folder, capsys):
    assert cli.main(["provenance", "spy/features", "2025-11-25"]) == 0
    out = capsys.readouterr().out
    assert "spy/features  session 2025-11-25" in out
    assert "none recorded in this Dagster instance" in out
    # that instance is configured by the project's dagster.yaml: crashed runs are retried
    with DagsterInstance.from_config(str(folder / "dagster")) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure


def test_each_derived_dataset_is_versioned_by_the_code_that_computes_it():
    sources = {n: {p.as_posix() for p in dataset_sources(n)} for n in DERIVED}
    assert "analytics/greeks.py" in sources["spy/features"]
    assert "analytics/scanner.py" in sources["spy/scan_events"]
    assert "analytics/scanner.py" not in sources["spy/features"] | sources["spy/training_data"]
    assert all({"builds.py", "storage.py", "params.py"} <= s for s in sources.values())
    assert not any(
        p.startswith(("cli.py", "dashboard/", "defs/")) for s in sources.values() for p in s
    )
    versions = {n: dataset_code_version(n) for n in DERIVED}
    assert len(set(versions.values())) == 3


def test_derived_assets_carry_those_versions_and_the_sensor_is_on_by_default():
    defs = build_definitions(["SPY"], settings=config.load({}))
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node, name = graph.get(key), key.to_user_string()
        if name in DERIVED:
            assert node.code_version == dataset_code_version(name)
            assert node.automation_condition.get_label() == "rebuild_on_upstream_change"
        else:  # raw: a new data version on every fetch, never rebuilt by automation
            assert node.code_version is None and node.automation_condition is None
    vendor_steps = {a.key.to_user_string(): a.op.retry_policy for a in defs.assets}
    assert vendor_steps["spy/option_minute_bars"] == VENDOR_RETRY_POLICY
    assert vendor_steps["spy/features"] is None
    [sensor] = [s for s in defs.sensors if s.name == SENSOR_NAME]
    assert sensor.default_status == DefaultSensorStatus.RUNNING
