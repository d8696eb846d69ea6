"""The pages under Streamlit's own harness (AppTest): what each one draws, and its bad states."""

import ast
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from spy_assets import cli
from spy_assets.dashboard import queries, server
from spy_assets.dashboard.figures import EVENT_SHAPE
from spy_assets.reports import scan_report_for
from spy_assets.storage import Storage, dataset
from spy_assets_tests.dashboard.conftest import FAILED_DATASET, FAILED_RULE, SESSIONS

PAGES = ("session_page", "contract_page", "report_page", "health_page")


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_string(
        f"from spy_assets.dashboard.views import {name}\n{name}()", default_timeout=60
    )
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def charts(at: AppTest) -> list[dict]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def test_no_data_yet_names_the_command_on_every_page(use_data, tmp_path):
    use_data(tmp_path / "empty")
    for name in PAGES:
        at = page(name)
        assert not at.exception
        [info] = texts(at, "info")
        assert "No data yet" in info and "spy-assets demo" in info and "backfill" in info


def test_session_page(use_data, dash_data):
    use_data(dash_data)
    at = page("session_page", session="2025-11-25")
    assert not at.exception and not texts(at, "error")
    [chart] = charts(at)
    view = queries.session_view(Storage(dash_data), "SPY", dt.date(2025, 11, 25))
    assert len(chart["data"]) == 2 + len(view.strikes) + 1
    assert f"open **{view.open_price:.2f}**" in at.markdown[0].value
    assert len(at.dataframe) == 1  # the news
    at.date_input[0].set_value(dt.date(2025, 11, 28)).run()
    assert at.query_params["session"] == "2025-11-28"
    assert "open" in at.markdown[0].value and not texts(at, "error")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2025-11-27", "not an NYSE trading session"),
        ("2025-11-29", "a weekend"),
        ("2025-11-24", "build it with uv run spy-assets backfill --session 2025-11-24"),
        ("not-a-date", "is not a date"),
    ],
)
def test_session_page_bad_dates(use_data, dash_data, value, message):
    use_data(dash_data)
    at = page("session_page", session=value)
    assert not at.exception
    shown = texts(at, "warning") + texts(at, "error")
    assert any(message in text for text in shown), shown


def test_session_page_refreshes_while_live(use_data, dash_data, monkeypatch):
    use_data(dash_data)
    monkeypatch.setattr(queries, "live_session", lambda now=None: dt.date(2025, 11, 26))
    at = page("session_page", session="2025-11-26")
    assert any("Live: re-read every 30 s" in c for c in texts(at, "caption"))
    at = page("contract_page", session="2025-11-26")
    assert any("Live: re-read every 30 s" in c for c in texts(at, "caption"))


def test_contract_page(use_data, dash_data):
    use_data(dash_data)
    storage = Storage(dash_data)
    events = storage.read(dataset("SPY", "scan_events"), dt.date(2025, 11, 26))
    at = page("contract_page", session="2025-11-26")
    assert not at.exception and len(at.selectbox[0].options) == 4
    for index, label in enumerate(at.selectbox[0].options):
        at.selectbox[0].select_index(index).run()
        contract = label.split(" ")[0]
        assert at.query_params["contract"] == contract
        [chart] = charts(at)
        shapes = [s for s in chart["layout"].get("shapes", []) if s.get("name") == EVENT_SHAPE]
        assert len(shapes) == int((events["contract"] == contract).sum())
        assert chart["data"][1]["name"] == "running session low (reference)"


def test_contract_page_iv_status_rows_are_listed(use_data, dash_data):
    use_data(dash_data)
    features = Storage(dash_data).read(dataset("SPY", "features"), dt.date(2025, 11, 26))
    flagged = features[features["iv"].isna()]["contract"].value_counts()
    at = page("contract_page", session="2025-11-26", contract=flagged.index[0])
    assert "Minutes without IV" in texts(at, "subheader")
    assert any("below_intrinsic" in c or ":" in c for c in texts(at, "caption"))
    [chart] = charts(at)
    nan_trace = [t for t in chart["data"] if t["name"] == "IV NaN (iv_status)"]
    assert len(nan_trace) == 1 and len(nan_trace[0]["x"]) == int(flagged.iloc[0])


def test_contract_page_bad_states(use_data, data_copy):
    use_data(data_copy)
    storage = Storage(data_copy)
    at = page("contract_page", session="2025-11-26", contract="O:SPY251126C00999000")
    assert any("is not one of the contracts picked" in w for w in texts(at, "warning"))
    ds = dataset("SPY", "option_contracts")
    contracts = storage.read(ds, dt.date(2025, 11, 25))
    extra = contracts.iloc[[0]].assign(contract="O:SPY251125C00700000", strike=700.0)
    storage.write(ds, dt.date(2025, 11, 25), pd.concat([contracts, extra]))
    at = page("contract_page", session="2025-11-25", contract="O:SPY251125C00700000")
    assert any("has no minute bars on 2025-11-25" in e for e in texts(at, "error"))
    storage.partition_path(dataset("SPY", "features"), dt.date(2025, 11, 28)).write_bytes(b"x")
    at = page("contract_page", session="2025-11-28")
    assert not at.exception
    assert any("damaged" in e and "backfill --session 2025-11-28" in e for e in texts(at, "error"))


def test_report_page_equals_the_report_command(use_data, dash_data, capsys):
    use_data(dash_data)
    at = page("report_page", start="2025-11-25", end="2025-11-28")
    assert not at.exception and not texts(at, "error")
    expected = scan_report_for(Storage(dash_data), "SPY", SESSIONS)
    assert expected.to_markdown().strip() in texts(at, "markdown")
    assert cli.main(["report", "--start", "2025-11-25", "--end", "2025-11-28"]) == 0
    assert expected.to_text().strip() in capsys.readouterr().out
    assert len(charts(at)) == 2 and len(at.dataframe) == 1
    assert at.get("download_button")
    at.number_input[0].set_value(30.0).run()
    assert any("Rescanned at +30%" in i for i in texts(at, "info"))
    assert any("threshold +30%" in m for m in texts(at, "markdown"))


def test_report_page_bad_states(use_data, data_copy):
    use_data(data_copy)
    storage = Storage(data_copy)
    storage.partition_path(dataset("SPY", "scan_events"), SESSIONS[1]).write_bytes(b"garbage")
    at = page("report_page", start="2025-11-21", end="2025-11-28")
    assert not at.exception
    assert any("not stored and are left out" in w for w in texts(at, "warning"))
    assert any("damaged file" in e and "2025-11-26" in e for e in texts(at, "error"))
    at = page("report_page", start="2025-11-03", end="2025-11-07")
    assert any("backfill --start 2025-11-03 --end 2025-11-07" in e for e in texts(at, "error"))


def test_health_page(use_data, dash_data):
    use_data(dash_data)
    at = page("health_page")
    assert not at.exception and not texts(at, "error")
    assert any("Dagster instance" in c for c in texts(at, "caption"))
    assert any("Schema drift is checked on the vendor datasets" in c for c in texts(at, "caption"))
    [expander] = at.expander
    assert FAILED_DATASET in expander.label and "schema check failed" in expander.label
    assert any(FAILED_RULE in m for m in texts(expander, "markdown"))
    assert len(at.dataframe) == 2


def test_health_page_without_an_instance_and_with_a_damaged_file(use_data, data_copy):
    import shutil

    use_data(data_copy)
    shutil.rmtree(data_copy / "dagster")
    path = Storage(data_copy).partition_path(dataset("SPY", "minute_bars"), SESSIONS[2])
    path.write_bytes(path.read_bytes()[:100])
    at = page("health_page")
    assert not at.exception
    assert any("no Dagster instance yet" in i for i in texts(at, "info"))
    assert any("spy/minute_bars for 2025-11-28" in e and "damaged" in e for e in texts(at, "error"))


def test_the_app_opens_on_the_session_page(use_data, dash_data):
    use_data(dash_data)
    at = AppTest.from_file(str(server.APP), default_timeout=60).run()
    assert not at.exception and at.title[0].value == "Session"


def test_only_the_health_page_imports_dagster_and_only_when_called():
    """No dashboard module imports Dagster when it is imported (``if TYPE_CHECKING`` aside):
    the health page's client does inside its functions, and the server's background warm-up
    once the first page is drawn."""
    package = Path(server.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if not any(n.split(".")[0] == "dagster" for n in names):
                continue
            assert node not in tree.body, f"{path.name} imports {names} at import time"
            assert path.name in ("health.py", "views.py"), f"{path.name} imports {names}"


def test_the_command_serves_on_localhost_only(capsys):
    argv = server.streamlit_argv(8600)
    assert "--server.address=127.0.0.1" in argv and "--server.port=8600" in argv
    assert "--browser.gatherUsageStats=false" in argv
    with pytest.raises(SystemExit) as stopped:
        cli.main(["dashboard", "--port", "0"])
    assert stopped.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_the_command_refuses_a_bad_environment_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("SPY_ASSETS_SOURCE", "bogus")
    assert cli.main(["dashboard", "--port", "8600"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: SPY_ASSETS_SOURCE='bogus'") and len(err.splitlines()) == 1
