"""Every bad input a user has given the command line: one line saying what is wrong, exit 2.

The test runs them all, asserts each answer, and writes the table (command, message, exit code)
to ``bad_inputs.md`` in the test's folder and to the terminal (``pytest -s``).
"""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from spy_assets import calendar, cli
from spy_assets.storage import Storage, dataset

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date.today()
NEXT_WEEK = calendar.next_session(calendar.session_on_or_before(TODAY + dt.timedelta(days=7)))
NEXT_YEAR = calendar.session_on_or_before(TODAY + dt.timedelta(days=300))

#: (environment, argv, what the one line must say)
CASES = [
    ({}, ["backfill", "--start", NEXT_WEEK.isoformat()], "has not traded yet"),
    ({}, ["backfill", "--session", NEXT_YEAR.isoformat()], "has not traded yet"),
    (
        {},
        ["backfill", "--start", "2022-06-01", "--end", "2022-06-30"],
        "before the first session of history, 2023-01-03",
    ),
    ({}, ["backfill", "--session", "2025-11-27"], "not an NYSE trading session"),
    ({}, ["backfill", "--start", "2025-11-31"], "is not a date"),
    ({}, ["backfill", "--start", "2025-11-28", "--end", "2025-11-20"], "is after"),
    ({}, ["sessions", "--start", "2025-11-29", "--end", "2025-11-30"], "no NYSE session"),
    ({}, ["backfill", "--session", "2025-11-26", "--chunk", "0"], "'0' must be at least 1"),
    ({}, ["backfill", "--session", "2025-11-26", "--chunk", "two"], "is not a whole number"),
    ({}, ["backfill", "--session", "2025-11-26", "--log-level", "BOGUS"], "invalid choice"),
    ({}, ["demo", "--sessions", "0"], "'0' must be at least 1"),
    ({}, ["query", "SELECT 1", "--max-rows", "-5"], "must be at least 1"),
    ({}, ["frobnicate"], "invalid choice: 'frobnicate'"),
    ({"SPY_ASSETS_SEED": "abc"}, ["backfill", "--session", "2025-11-26"], "is not an integer"),
    (
        {"SPY_ASSETS_REQUESTS_PER_MINUTE": "fast"},
        ["backfill", "--session", "2025-11-26"],
        "SPY_ASSETS_REQUESTS_PER_MINUTE='fast' is not a number",
    ),
    (
        {"SPY_ASSETS_UNDERLYINGS": "XYZ"},
        ["backfill", "--session", "2025-11-26"],
        "XYZ is not in the synthetic market",
    ),
    (
        {"SPY_ASSETS_UNDERLYINGS": "SPY,SPY"},
        ["backfill", "--session", "2025-11-26"],
        "lists SPY more than once",
    ),
    (
        {"SPY_ASSETS_UNDERLYINGS": "SPY,VIX"},
        ["backfill", "--session", "2025-11-26"],
        "would collide with the shared vix",
    ),
    (
        {"SPY_ASSETS_SOURCE": "massive"},
        ["backfill", "--session", "2025-11-26"],
        "needs a vendor key",
    ),
    (
        {"SPY_ASSETS_DATA_DIR": "gs://bucket/data"},
        ["backfill", "--session", "2025-11-26"],
        "use a local folder or an s3://bucket[/prefix] URL",
    ),
    (
        {"SPY_ASSETS_FIRST_SESSION": "yesterday"},
        ["backfill", "--session", "2025-11-26"],
        "is not a date",
    ),
    (
        {},
        ["report", "--session", "2025-11-26", "--underlying", "QQQ"],
        "unknown underlying 'QQQ'",
    ),
    ({}, ["report", "--session", "2025-11-26"], "no scan events of SPY are stored"),
    ({}, ["query", ""], "empty query"),
    ({}, ["query", "SELECT * FROM spy_minute_bars; SELECT 1"], "2 statements given"),
    ({}, ["query", "COPY (SELECT 1) TO '/tmp/spy_assets_copy.csv'"], "COPY is not allowed"),
    ({}, ["query", "SELECT * FROM read_csv('/etc/passwd')"], "/etc/passwd"),
    ({}, ["query", "ATTACH '/tmp/other.duckdb'"], "ATTACH is not allowed"),
    ({}, ["query", "SELECT * FROM no_such_view"], "no_such_view does not exist"),
]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A working folder with a little stored data (queries need a dataset to refuse against)."""
    monkeypatch.chdir(tmp_path)
    for name in ("SPY_ASSETS_DATA_DIR", "SPY_ASSETS_UNDERLYINGS", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    bars = pd.DataFrame(
        {
            "ticker": ["SPY"],
            "timestamp": [calendar.session_open(dt.date(2025, 11, 25))],
            "open": [1.0],
            "high": [1.0],
            "low": [1.0],
            "close": [1.0],
        }
    )
    Storage(tmp_path / "data").write(dataset("SPY", "minute_bars"), dt.date(2025, 11, 25), bars)
    return tmp_path


def _run(argv, env, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    for name in env:
        monkeypatch.delenv(name)
    return code, out.err.strip()


def test_every_bad_input_gets_one_line_and_a_non_zero_exit(folder, monkeypatch, capsys):
    rows = []
    for env, argv, expected in CASES:
        code, err = _run(argv, env, monkeypatch, capsys)
        words = [repr(a) if " " in a or not a else a for a in argv]
        command = " ".join([*(f"{k}={v}" for k, v in env.items()), "spy-assets", *words])
        rows.append((command, err, code))
        assert code == 2, (command, code, err)
        assert expected in err, (command, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (command, err)
    assert not Path("/tmp/spy_assets_copy.csv").exists()
    table = ["| command | message | exit |", "|---|---|---|"]
    table += ["| `" + c + "` | " + m.replace("|", "/") + f" | {e} |" for c, m, e in rows]
    (folder / "bad_inputs.md").write_text("\n".join(table) + "\n")
    print("\n" + "\n".join(table))


def test_the_installed_command_answers_in_one_line(tmp_path):
    """The real entry point, in its own process: no traceback reaches the terminal."""
    for env, argv in (
        ({"SPY_ASSETS_SEED": "abc"}, ["backfill", "--session", "2025-11-26"]),
        ({}, ["query", ""]),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "spy_assets.cli", *argv],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_failed_run_prints_the_projects_own_error_and_its_sessions(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(tmp_path / "data"))
    blocker = tmp_path / "data" / "parquet" / "vix"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the vix/ folder should be")
    assert cli.main(["backfill", "--session", "2025-11-26"]) == 1
    err = capsys.readouterr().err
    assert "The run of sessions 2025-11-26 stopped:" in err
    [line] = [x for x in err.splitlines() if "vix__minute_bars" in x]
    assert "NotADirectoryError" in line and str(blocker) in line
    assert "Error occurred while executing" not in err and "Traceback" not in err
