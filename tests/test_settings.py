"""Settings (lib/settings.py): defaults, the environment, and one-line errors naming the key."""

from pathlib import Path

import pytest

from app import create_app
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
