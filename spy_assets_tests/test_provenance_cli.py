"""``spy-assets provenance`` on bad input: an unknown dataset, a session that was never built or
is not a session get one line naming it and exit 2 (the built case is in
integration/test_corrections.py, after a correction)."""

import pandas as pd
import pytest
from dagster import DagsterInstance

from spy_assets import cli
from spy_assets.storage import Storage, dataset


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
