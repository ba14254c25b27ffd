"""Model discovery: a folder with a manifest is a served model; names and paths come from the manifests."""

import errno
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from lib import specs
from model import ModelLoadError, NLPModel
from tests.doc_pages import block
from tests.helpers import ROOT, declare_huge_array, rewrite_manifest

#: Failures no check in the load foresees, and the cause each must be reported with, after the folder's path.
UNFORESEEN = [
    (MemoryError(), "MemoryError"),
    (PermissionError(errno.EACCES, "Permission denied", "idf.npy"), "[Errno 13] Permission denied: 'idf.npy' (PermissionError)"),
    (OSError(errno.EIO, "Input/output error"), "[Errno 5] Input/output error (OSError)"),
    (RuntimeError("broken\n  over two lines"), "broken over two lines (RuntimeError)"),
    (KeyError("params"), "'params' (KeyError)"),
]


@pytest.fixture
def models(tiny_models: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny models."""
    return Path(shutil.copytree(tiny_models, tmp_path / "models"))


def add_model(models: Path, name: str, **manifest: object) -> Path:
    """Drop in a new model folder (a copy of sentiment under another name), as a data scientist would."""
    folder = Path(shutil.copytree(models / "sentiment", models / name))
    rewrite_manifest(folder, name=name, **manifest)
    return folder


def test_a_new_folder_is_served_everywhere(models: Path) -> None:
    add_model(models, "reviews", endpoint="/reviews", labels=["thumbs down", "thumbs up"])
    client = create_app({"MODELS_DIR": str(models)}).test_client()
    answer = client.get("/reviews?query=a brilliant film").get_json()
    assert answer["prediction"] in ("thumbs down", "thumbs up") and "rating" not in answer
    assert client.get("/models").json["models"]["reviews"]["endpoint"] == "/reviews"
    assert "reviews" in client.get("/ready").get_json()["models"]
    spec = client.get("/openapi.json").json
    assert spec["paths"]["/reviews"]["get"]["operationId"] == "reviews_get"
    assert spec["components"]["schemas"]["ReviewsPrediction"]["properties"]["prediction"]["enum"] == ["thumbs down", "thumbs up"]
    assert 'model="reviews"' in client.get("/metrics").get_data(as_text=True)


def test_endpoint_defaults_to_the_name(models: Path) -> None:
    folder = add_model(models, "critics")
    manifest_without_endpoint = (folder / "manifest.json").read_text().replace('"endpoint": "/", ', "")
    (folder / "manifest.json").write_text(manifest_without_endpoint)
    assert create_app({"MODELS_DIR": str(models)}).test_client().get("/critics?query=fine").status_code == 200


def test_hidden_and_manifestless_folders_are_ignored(models: Path) -> None:
    (models / ".staging").mkdir()
    (models / "notes").mkdir()
    assert set(create_app({"MODELS_DIR": str(models)}).extensions["models"].models) == set(specs.MODEL_SPECS)


@pytest.mark.parametrize(
    ("manifest", "match"),
    [
        ({"endpoint": "/"}, r"at / clashes with 'extra'"),
        ({"endpoint": "/health"}, "is one the service uses"),
        ({"endpoint": "/../etc"}, "is not a path like /ratings"),
        ({"endpoint": 7}, "is not a path like /ratings"),
        ({"endpoint": "/x", "index_field": "confidence"}, "index_field 'confidence' must be"),
    ],
)
def test_clashing_or_bad_serving_fields_are_refused(models: Path, manifest: dict, match: str) -> None:
    add_model(models, "extra", **manifest)
    with pytest.raises(ModelLoadError, match=match):
        create_app({"MODELS_DIR": str(models)})


def test_no_model_may_take_a_path_the_service_answers_itself(models: Path) -> None:
    """Every route of the app that is not a model's, read from its URL map: a model asking for it is refused."""
    app = create_app({"MODELS_DIR": str(models)})
    model_paths = {served.endpoint for served in app.extensions["models"].models.values()}
    own = sorted(rule.rule for rule in app.url_map.iter_rules() if rule.rule not in model_paths and "<" not in rule.rule)
    assert {"/health", "/ready", "/models", "/metrics", "/openapi.json", "/docs", "/demo"} <= set(own)
    for path in own:
        folder = add_model(models, "extra", endpoint=path)
        with pytest.raises(ModelLoadError, match=f"endpoint '{path}' is not a path like /ratings .* or is one the service uses"):
            create_app({"MODELS_DIR": str(models)})
        shutil.rmtree(folder)


@pytest.mark.slow  # a Python process of its own
def test_the_docs_linear_model_saved_as_a_script_is_served(tmp_path: Path) -> None:
    """The models page's own-model block, run as a user runs it (a script, in a folder of theirs), then served."""
    (tmp_path / "own_model.py").write_text(block('family="linear"').code)
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "own_model.py"], cwd=tmp_path, env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "linear"
    client = create_app({"MODELS_DIR": str(tmp_path / "my-models")}).test_client()
    answer = client.get("/reviews?query=a wonderful comedy&explain=true").get_json()
    assert answer["prediction"] == "Positive" and answer["model_version"] == done.stdout.split()[0]
    assert answer["explanation"]["terms"]


def test_no_model_may_take_the_name_of_a_route_the_service_answers_itself(models: Path) -> None:
    """A model's route is named after the model: one named like the service's own (health, docs...) is refused."""
    app = create_app({"MODELS_DIR": str(models)})
    model_names = set(app.extensions["models"].models)
    own = sorted({rule.endpoint for rule in app.url_map.iter_rules()} - model_names)
    assert {"health", "ready", "models", "docs", "demo"} <= set(own)
    for name in own:
        folder = add_model(models, name, endpoint="/elsewhere")
        with pytest.raises(ModelLoadError, match=f"name '{name}' is one the service's own routes use") as refused:
            create_app({"MODELS_DIR": str(models)})
        assert "\n" not in str(refused.value)
        shutil.rmtree(folder)


def test_two_folders_with_one_name_are_refused(models: Path) -> None:
    add_model(models, "copy", endpoint="/copy")
    rewrite_manifest(models / "copy", name="sentiment")
    with pytest.raises(ModelLoadError, match=r"sentiment/manifest.json: model 'sentiment' at / clashes with 'sentiment'"):
        create_app({"MODELS_DIR": str(models)})


def test_no_model_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model folder"):
        create_app({"MODELS_DIR": str(tmp_path)})
    with pytest.raises(ModelLoadError, match="no such folder"):
        create_app({"MODELS_DIR": str(tmp_path / "missing")})


def build_info(app: Flask, name: str, version: str) -> float | None:
    """The model_build_info sample of one model version on the app's /metrics, or None when it has none."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    lines = [line for line in text.splitlines() if line.startswith("model_build_info{")]
    found = [line for line in lines if f'model="{name}"' in line and f'version="{version}"' in line]
    return float(found[0].rsplit(" ", 1)[1]) if found else None


def test_the_registry_loads_a_changed_set_and_retires_the_versions_it_no_longer_serves(models: Path) -> None:
    app = create_app({"MODELS_DIR": str(models)})
    registry = app.extensions["models"]
    gone = registry.models["ratings"].version
    add_model(models, "late", endpoint="/late")
    shutil.rmtree(models / "ratings")
    assert registry.reload() is False, "this app's routes are fixed: a changed set is served by a new app"
    assert set(registry.models) == set(specs.MODEL_SPECS)
    registry.load()  # what a new app's registry does, taking over from this one
    assert set(registry.models) == set(specs.MODEL_SPECS) - {"ratings"} | {"late"}
    assert build_info(app, "ratings", gone) == 0
    assert build_info(app, "late", registry.models["late"].version) == 1


def test_a_new_app_serves_an_added_model_and_drops_a_removed_one(models: Path) -> None:
    """What the production server does on SIGHUP: the new app takes over the old one's lifecycle and metrics."""
    config = {"MODELS_DIR": str(models)}
    old = create_app(config)
    ratings = old.extensions["models"].models["ratings"].version
    add_model(models, "late", endpoint="/late")
    shutil.rmtree(models / "ratings")
    new = create_app(config, previous=old)
    client = new.test_client()
    assert client.get("/late?query=fine").status_code == 200 and client.get("/?query=fine").status_code == 200
    assert client.get("/ratings?query=fine").status_code == 404
    served = set(specs.MODEL_SPECS) - {"ratings"} | {"late"}
    assert set(client.get("/models").json["models"]) == set(client.get("/ready").json["models"]) == served
    paths = set(client.get("/openapi.json").json["paths"])
    assert {"/late", "/"} <= paths and "/ratings" not in paths
    assert new.extensions["lifecycle"] is old.extensions["lifecycle"] and new.extensions["metrics"] is old.extensions["metrics"]
    assert build_info(new, "ratings", ratings) == 0
    assert build_info(new, "late", new.extensions["models"].models["late"].version) == 1
    again = create_app(config, previous=new)  # nothing changed: the same set, still loaded
    assert set(again.extensions["models"].models) == served
    assert build_info(again, "late", new.extensions["models"].models["late"].version) == 1
    assert old.test_client().get("/ratings?query=fine").status_code == 200, "the old app serves on until it is replaced"


def test_ready_says_draining_once_shutdown_begins(client: FlaskClient) -> None:
    assert client.get("/ready").status_code == 200
    client.application.extensions["lifecycle"].begin_drain()
    draining = client.get("/ready")
    assert draining.status_code == 503 and draining.json["status"] == "draining"
    assert set(draining.json["models"]) == set(specs.MODEL_SPECS)
    assert client.get("/?query=fine").status_code == 200, "requests already routed here are still answered"


def test_names_that_make_one_openapi_name_are_refused_naming_both_folders(models: Path) -> None:
    add_model(models, "movie-ratings", endpoint="/movie-ratings")
    add_model(models, "movie_ratings", endpoint="/movie_ratings")
    with pytest.raises(ModelLoadError) as caught:
        create_app({"MODELS_DIR": str(models)})
    message = str(caught.value)
    assert (
        str(models / "movie_ratings" / "manifest.json") in message and str(models / "movie-ratings" / "manifest.json") in message
    )
    assert "both make the OpenAPI name 'MovieRatings'" in message and "\n" not in message


def test_a_name_with_a_line_break_never_reaches_a_header(models: Path) -> None:
    """It once loaded, and every prediction answered 500 as the name went into X-Model-Version."""
    add_model(models, "evil\r\nx-injected: 1", endpoint="/evil")
    with pytest.raises(ModelLoadError, match=r"evil\\r\\nx-injected: 1' must be 1 to 64 lower-case letters"):
        create_app({"MODELS_DIR": str(models)})


def fail_loading(monkeypatch: pytest.MonkeyPatch, folder: Path, fault: Exception) -> None:
    """Make loading ``folder`` raise ``fault``; the other folders load as usual."""
    load = NLPModel.load

    def failing(directory: Path) -> NLPModel:
        if Path(directory) == folder:
            raise fault
        return load(directory)

    monkeypatch.setattr(NLPModel, "load", failing)


@pytest.mark.parametrize(("fault", "cause"), UNFORESEEN, ids=[type(fault).__name__ for fault, _ in UNFORESEEN])
def test_any_failure_at_start_is_one_line_naming_the_folder(
    models: Path, monkeypatch: pytest.MonkeyPatch, fault: Exception, cause: str
) -> None:
    fail_loading(monkeypatch, models / "sentiment", fault)
    with pytest.raises(ModelLoadError) as refused:
        create_app({"MODELS_DIR": str(models)})
    assert str(refused.value) == f"{models / 'sentiment'}: {cause}"


@pytest.mark.parametrize(("fault", "cause"), UNFORESEEN, ids=[type(fault).__name__ for fault, _ in UNFORESEEN])
def test_any_failure_on_reload_keeps_the_old_models(
    models: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fault: Exception, cause: str
) -> None:
    app = create_app({"MODELS_DIR": str(models)})
    registry = app.extensions["models"]
    served = dict(registry.models)
    versions = ", ".join(model.version for model in served.values())
    fail_loading(monkeypatch, models / "sentiment", fault)
    caplog.clear()
    assert registry.reload() is False
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == [
        f"reload refused, still serving {versions}: {models / 'sentiment'}: {cause}"
    ]
    assert registry.models == served
    answer = app.test_client().get("/?query=fine")
    assert answer.status_code == 200 and answer.json["model_version"] == served["sentiment"].version


def test_a_folder_that_cannot_be_looked_into_is_named(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exists = Path.exists

    def denied(path: Path) -> bool:
        if path == models / "ratings" / "manifest.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return exists(path)

    monkeypatch.setattr(Path, "exists", denied)
    with pytest.raises(ModelLoadError) as refused:
        create_app({"MODELS_DIR": str(models)})
    assert str(refused.value) == (
        f"{models / 'ratings'}: [Errno 13] Permission denied: '{models / 'ratings' / 'manifest.json'}' (PermissionError)"
    )


@pytest.mark.parametrize(
    ("tamper", "cause"),
    [(declare_huge_array, "(MemoryError)")],
    ids=["array declaring 694 PiB"],
)
def test_files_that_fail_past_the_checks_are_refused_in_one_line(
    models: Path, caplog: pytest.LogCaptureFixture, tamper: Callable[[Path], None], cause: str
) -> None:
    """Digests and version match, so only the parse meets the fault: at start and on reload, one line names the folder."""
    app = create_app({"MODELS_DIR": str(models)})
    tamper(models / "sentiment")
    with pytest.raises(ModelLoadError) as refused:
        create_app({"MODELS_DIR": str(models)})
    message = str(refused.value)
    assert message.startswith(f"{models / 'sentiment'}: ") and message.endswith(cause) and "\n" not in message
    registry = app.extensions["models"]
    versions = ", ".join(model.version for model in registry.models.values())
    caplog.clear()
    assert registry.reload() is False
    [logged] = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert logged.startswith(f"reload refused, still serving {versions}: {models / 'sentiment'}: ") and logged.endswith(cause)
