"""The factory (app.py): what create_app builds, and what stops it."""

from pathlib import Path

import pytest

from app import create_app
from model import ModelLoadError


def test_missing_models_refuse_to_start(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no model folder \(a folder holding manifest\.json\)"):
        create_app({"MODELS_DIR": str(tmp_path)})


def test_every_model_gets_its_route(tiny_models: Path) -> None:
    app = create_app({"MODELS_DIR": str(tiny_models)})
    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    for name, served in app.extensions["models"].models.items():
        assert rules[served.endpoint] == name


def test_debug_is_never_on_in_the_app(tiny_models: Path) -> None:
    assert create_app({"MODELS_DIR": str(tiny_models), "DEBUG": "1"}).debug is False
