"""The environment: defaults, and a one-line error naming the variable for each bad value."""

import datetime as dt
from pathlib import Path

import pytest

from spy_assets import config
from spy_assets.errors import ConfigError


def test_defaults():
    s = config.load({})
    assert s.underlyings == ("SPY",)
    assert s.source_name == "synthetic" and s.seed == 7 and s.requests_per_minute == 5.0
    assert s.first_session == dt.date(2023, 1, 3)
    assert s.data_dir.is_absolute() and s.data_dir.name == "data"


def test_the_data_root_may_be_an_object_store_with_local_state_elsewhere(tmp_path):
    s = config.load({"SPY_ASSETS_DATA_DIR": "s3://research-bucket/spy/"})
    assert s.data_dir == "s3://research-bucket/spy" and not s.data_is_local
    assert s.state_dir == Path.cwd() / "data"  # ./data, local
    s = config.load({"SPY_ASSETS_DATA_DIR": "s3://b-1", "SPY_ASSETS_STATE_DIR": str(tmp_path)})
    assert s.data_dir == "s3://b-1" and s.state_dir == tmp_path
    local = config.load({"SPY_ASSETS_DATA_DIR": str(tmp_path / "d")})
    assert local.data_is_local and local.state_dir == local.data_dir == tmp_path / "d"


def test_a_key_selects_the_vendor():
    s = config.load({"POLYGON_API_KEY": "k", "SPY_ASSETS_UNDERLYINGS": "spy, xyz"})
    assert s.source_name == "massive" and s.key_variable == "POLYGON_API_KEY"
    assert s.underlyings == ("SPY", "XYZ")  # the vendor is asked about XYZ at run time


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SPY_ASSETS_SEED": "abc"}, "SPY_ASSETS_SEED='abc' is not an integer"),
        ({"SPY_ASSETS_REQUESTS_PER_MINUTE": "fast"}, "is not a number"),
        ({"SPY_ASSETS_REQUESTS_PER_MINUTE": "0"}, "must be a positive number"),
        ({"SPY_ASSETS_SOURCE": "yahoo"}, "use one of auto, synthetic, massive"),
        ({"SPY_ASSETS_SOURCE": "massive"}, "needs a vendor key"),
        ({"SPY_ASSETS_UNDERLYINGS": "XYZ"}, "not in the synthetic market"),
        ({"SPY_ASSETS_UNDERLYINGS": "SPY,SPY"}, "lists SPY more than once"),
        ({"SPY_ASSETS_UNDERLYINGS": "SPY,vix"}, "would collide with the shared vix"),
        ({"SPY_ASSETS_UNDERLYINGS": "news"}, "would collide with the shared news"),
        ({"SPY_ASSETS_UNDERLYINGS": "S P Y"}, "is not a ticker"),
        ({"SPY_ASSETS_FIRST_SESSION": "2023-13-01"}, "is not a date"),
        ({"SPY_ASSETS_FIRST_SESSION": "1999-01-04"}, "at the earliest"),
        ({"SPY_ASSETS_DATA_DIR": "gs://bucket/data"}, "a local folder or an s3://bucket"),
        ({"SPY_ASSETS_DATA_DIR": "s3:/bucket"}, "a local folder or an s3://bucket"),
        ({"SPY_ASSETS_STATE_DIR": "s3://bucket/state"}, "use a local folder"),
        ({"MASSIVE_BASE_URL": "localhost:8080"}, "is not an http(s) URL"),
    ],
)
def test_bad_values_are_one_line_errors(env, message):
    with pytest.raises(ConfigError, match=None) as caught:
        config.load(env)
    text = str(caught.value)
    assert message in text and "\n" not in text
