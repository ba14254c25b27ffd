"""Settings (lib/settings.py): defaults, the environment, and one-line errors naming the key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import app
from app import create_app
from bench.harness import ROOT
from lib.settings import LOCAL_ORIGINS, ConfigError, Settings


@pytest.mark.parametrize(
    ("key", "value"), [("MAX_BATCH", "lots"), ("MAX_QUERY_CHARS", "0"), ("MAX_BODY_BYTES", "-5"), ("LOG_LEVEL", "loud")]
)
def test_bad_config_names_key_and_value(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"Config '{key}' has value"):
        Settings.from_mapping({key: value})


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch, tiny_models: Path) -> None:
    monkeypatch.setenv("MAX_BATCH", "2")
    monkeypatch.setenv("MODELS_DIR", str(tiny_models))
    response = create_app().test_client().post("/", json={"queries": ["a", "b", "c"]})
    assert response.status_code == 413 and "limit is 2" in response.json["message"]


def test_cors_settings() -> None:
    assert Settings.from_mapping({}).cors_origins == (LOCAL_ORIGINS,)
    assert Settings.from_mapping({"CORS_ORIGINS": " https://a.example , * "}).cors_origins == ("https://a.example", "*")
    with pytest.raises(ConfigError, match=r"Config 'CORS_ORIGINS' has value 'a\.example'"):
        Settings.from_mapping({"CORS_ORIGINS": "a.example"})


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"PORT": "99999"}, "Config 'PORT' has value '99999'. Not a port number (1-65535)."),
        ({"PORT": "http"}, "Config 'PORT' has value 'http'. Not a port number (1-65535)."),
        ({"LOG_LEVEL": "verbose"}, "Config 'LOG_LEVEL' has value 'VERBOSE'. Expected DEBUG, INFO, WARNING, ERROR or CRITICAL."),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent"},
            "Config 'PROMETHEUS_MULTIPROC_DIR' has value '/nonexistent'. Not a writable folder.",
        ),
        ({"MAX_BATCH": "-1"}, "Config 'MAX_BATCH' has value '-1'. Not a positive integer."),
        ({"LOG_QUERIES": "all"}, "Config 'LOG_QUERIES' has value 'all'. Expected none, hmac or text."),
        ({"LOG_QUERIES": "hmac"}, "Config 'QUERY_LOG_KEY' must be a secret of at least 16 characters when LOG_QUERIES=hmac."),
    ],
)
def test_development_server_stops_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variables: dict[str, str], message: str
) -> None:
    for key in ("PORT", "LOG_LEVEL", "PROMETHEUS_MULTIPROC_DIR", "LOG_QUERIES", "QUERY_LOG_KEY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert app.main() == 1
    assert capsys.readouterr().err.strip() == f"error: {message}"


@pytest.mark.slow
def test_development_server_command_stops_with_one_line() -> None:
    """The same, as `python app.py` prints it."""
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env={**env, "PORT": "99999"}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: Config 'PORT' has value '99999'. Not a port number (1-65535)."
