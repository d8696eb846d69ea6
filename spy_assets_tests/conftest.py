"""Shared fixtures: a real Dagster instance and a data folder per test."""

import datetime as dt
import warnings

import pytest
from dagster import BetaWarning, DagsterInstance, PreviewWarning

from spy_assets import config
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets_tests.vendor_server import VendorServer

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

#: A short window that holds an ordinary week and the 2025-11-28 early close.
SESSIONS = [dt.date(2025, 11, 25), dt.date(2025, 11, 26), dt.date(2025, 11, 28)]


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def data_dir_in_env(data_dir, monkeypatch):
    """The test's data folder as the environment's, for tests that wire the vendor resource by
    hand: its client keeps the rate-limit bucket file in the environment's data folder, which
    would otherwise be ./data of the checkout."""
    monkeypatch.setenv(config.DATA_DIR, str(data_dir))
    return data_dir


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(tempdir=str(home)) as inst:
        yield inst


#: The key the local vendor server accepts in the vendor client tests.
VENDOR_KEY = "test-key-9f8e7d6c5b4a"


@pytest.fixture(scope="module")
def market():
    return SyntheticMarket()


@pytest.fixture
def server(market):
    """The local vendor server over the synthetic market, on 127.0.0.1."""
    with VendorServer(market, api_key=VENDOR_KEY, page_size=5000) as srv:
        yield srv
