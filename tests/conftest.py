"""Fixtures: a tiny Kaggle-shaped TSV, models built from it, the app and its client, live servers, a real browser."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

import build_model
from app import create_app
from tests.helpers import (
    CLIENT_TIMEOUT,
    KAGGLE_TRAIN,
    STEP_TIMEOUT,
    TEST_BUDGET,
    Deadline,
    chromium,
    save_linear_model,
    time_limit,
    tiny_rows,
    write_tsv,
)
from tests.support import checkout
from tests.support.harness import ROOT, Server, production_command, serving
from tests.support.rebuild import BackgroundBuild

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

#: Hypothesis keeps its examples and caches outside the checkout, in one folder per checkout that outlives the run, so a
#: failing example found once is replayed first next time.
HYPOTHESIS_HOME = Path(tempfile.gettempdir()) / f"hypothesis-{checkout.checkout_key(ROOT)}"
set_hypothesis_home_dir(HYPOTHESIS_HOME)
hypothesis_settings.register_profile("suite", database=DirectoryBasedExampleDatabase(HYPOTHESIS_HOME / "examples"))
hypothesis_settings.load_profile("suite")

#: The full-data rebuild of this run, when a selected test asks for it (the ``rebuilt`` fixture).
REBUILD = pytest.StashKey[BackgroundBuild]()


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the full-data rebuild now, and run the tests that wait for it last, so that it overlaps all the others."""
    rebuilds = [item for item in items if "rebuilt" in getattr(item, "fixturenames", ())]
    if rebuilds and KAGGLE_TRAIN.is_file():
        config.stash[REBUILD] = BackgroundBuild(KAGGLE_TRAIN)
        items[:] = [item for item in items if item not in rebuilds] + rebuilds


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the rebuild if the run ended before it did, and remove its folder."""
    build = session.config.stash.get(REBUILD, None)
    if build is not None:
        build.stop()


@pytest.fixture(scope="session")
def rebuilt(request: pytest.FixtureRequest) -> Path:
    """Every model rebuilt from the full Kaggle data by the README's build command, in a temporary folder."""
    build = request.config.stash.get(REBUILD, None)
    if build is None:  # the data appeared after collection; build now
        build = request.config.stash[REBUILD] = BackgroundBuild(KAGGLE_TRAIN)
    return build.models()


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """Fail the run if it left anything but caches in the checkout: a test's output overwrites the user's files there."""
    before = checkout.snapshot(ROOT)
    yield
    after = checkout.snapshot(ROOT)
    if before is not None and after is not None and (lines := checkout.changes(before, after)):
        pytest.fail(checkout.report(lines), pytrace=False)


@pytest.fixture(scope="session")
def tiny_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small training file shaped like the Kaggle one."""
    return write_tsv(tmp_path_factory.mktemp("data") / "train.tsv", tiny_rows())


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_tsv: Path) -> Path:
    """Both models built by the real build command from the tiny file."""
    out = tmp_path_factory.mktemp("models")
    assert build_model.main(["--data", str(tiny_tsv), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def mixed_models(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    """The tiny naive Bayes models beside two linear ones over words and characters: /sentiment-logreg, /ratings-logreg."""
    out = tmp_path_factory.mktemp("mixed-models")
    for folder in tiny_models.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            shutil.copytree(folder, out / folder.name)
    save_linear_model(out, "sentiment-logreg")
    save_linear_model(out, "ratings-logreg", five_classes=True)
    return out


@pytest.fixture
def app(tiny_models: Path) -> Flask:
    """The service over the tiny models, with small limits that tests can reach."""
    return create_app({"MODELS_DIR": str(tiny_models), "MAX_QUERY_CHARS": 50, "MAX_BATCH": 3, "MAX_BODY_BYTES": 4096})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client for the tiny-model app."""
    return app.test_client()


@pytest.fixture(scope="session")
def committed_client() -> FlaskClient:
    """Flask's test client over the committed models, as a fresh clone serves them."""
    return create_app().test_client()


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python app.py`` on a free port, over the committed models: the README's first command."""
    with serving([sys.executable, "app.py"], {}, tmp_path_factory.mktemp("dev-server")) as server:
        yield server.url


@pytest.fixture(scope="session")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The production command with two workers on a free port."""
    env = {"WEB_CONCURRENCY": "2", "ACCESS_LOG": "-", "CLIENT_TIMEOUT": str(CLIENT_TIMEOUT)}
    with serving(production_command(), env, tmp_path_factory.mktemp("production-server")) as server:
        yield server


@pytest.fixture
def budget() -> Iterator[Deadline]:
    """A browser test's time budget: explicit waits are cut to it, and a hard limit a little past it stops anything stuck."""
    with time_limit(TEST_BUDGET + STEP_TIMEOUT):
        yield Deadline(TEST_BUDGET)


@pytest.fixture
def browser(tmp_path: Path, budget: Deadline) -> Iterator[Chrome]:
    """Headless Chromium (Debian's) with a fresh profile in tmp_path; tests using it are marked needs_chromium."""
    with chromium(tmp_path) as driver:
        yield driver
