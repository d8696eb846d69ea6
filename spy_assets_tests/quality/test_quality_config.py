"""The quality settings: defaults, accepted forms, one-line refusals that name the variable."""

import pytest

from spy_assets import cli, config
from spy_assets.errors import ConfigError


def test_defaults_and_accepted_forms():
    settings = config.load({})
    assert (settings.drift_severity, settings.freshness_deadline, settings.alert_url) == (
        "warn",
        "60",
        None,
    )
    settings = config.load(
        {
            config.DRIFT_SEVERITY: "ERROR",
            config.FRESHNESS_DEADLINE: "7:05",
            config.ALERT_URL: "json://127.0.0.1:9/hook?token=t0ps3cret",
        }
    )
    assert (settings.drift_severity, settings.freshness_deadline) == ("error", "07:05")
    assert "t0ps3cret" not in repr(settings)


@pytest.mark.parametrize(
    "name, value",
    [
        (config.DRIFT_SEVERITY, "fatal"),
        (config.FRESHNESS_DEADLINE, "soon"),
        (config.FRESHNESS_DEADLINE, "25:00"),
        (config.ALERT_URL, "not a url"),
    ],
)
def test_bad_values_are_refused_in_one_line(name, value, monkeypatch, capsys):
    with pytest.raises(ConfigError, match=name):
        config.load({name: value})
    monkeypatch.setenv(name, value)
    assert cli.main(["drift", "show"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name}") and err.count("\n") == 1
