"""Shared fixtures: a real Dagster instance and a data folder per test."""

import datetime as dt
import warnings

import pytest
from dagster import BetaWarning, DagsterInstance, PreviewWarning

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

#: A short window that holds an ordinary week and the 2025-11-28 early close.
SESSIONS = [dt.date(2025, 11, 25), dt.date(2025, 11, 26), dt.date(2025, 11, 28)]


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(tempdir=str(home)) as inst:
        yield inst
