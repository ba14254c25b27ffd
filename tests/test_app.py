"""The factory (app.py): what create_app builds, and what stops it."""

import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from model import ModelLoadError
from tests.support.harness import ROOT


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


def test_linear_models_beside_naive_bayes_show_in_ready_models_and_the_document(mixed_models: Path) -> None:
    """Every folder is served: its route answers, and /ready, /models, /openapi.json and /docs' document list it."""
    client = create_app({"MODELS_DIR": str(mixed_models)}).test_client()
    names = {"sentiment", "ratings", "sentiment-logreg", "ratings-logreg"}
    ready = client.get("/ready").get_json()["models"]
    served = client.get("/models").get_json()["models"]
    assert set(ready) == set(served) == names
    assert {served[name]["family"] for name in names} == {"naive_bayes", "linear"}
    document = client.get("/openapi.json").get_json()
    for name in names:
        path = served[name]["endpoint"]
        assert path in document["paths"] and f"`{path}` serves `{name}`" in document["info"]["description"]
        answer = client.get(path, query_string={"query": "a wonderful film"}).get_json()
        assert answer["model_version"] == ready[name] == served[name]["version"]
    assert client.get("/ratings-logreg?query=a wonderful film").get_json()["rating"] in range(5)


def test_the_service_serves_without_the_build_only_packages() -> None:
    """The container image leaves pandas and matplotlib out (they only build models): the service must not import them."""
    script = (
        "import sys\n"
        "sys.modules['pandas'] = sys.modules['matplotlib'] = None  # any import of them now fails\n"
        "import app, lib.server\n"
        "client = app.create_app().test_client()\n"
        "for path in ('/', '/ratings', '/sentiment-logreg', '/ratings-logreg'):\n"
        "    assert client.get(path, query_string={'query': 'good fun', 'explain': 'true'}).status_code == 200, path\n"
    )
    served = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert served.returncode == 0, served.stderr[-2000:]
