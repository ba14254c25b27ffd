"""The committed models: what the README's build produces from the Kaggle data (skipped without it), and their reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import build_model
import util
from lib import specs
from model import NLPModel
from tests.helpers import COMMITTED_MODELS, KAGGLE_TRAIN, needs_kaggle
from tests.support.rebuild import BackgroundBuild

#: NumPy 2.4's names for the AVX-512 kernels it dispatches to.
AVX512 = ("X86_V4", "AVX512_ICL", "AVX512_SPR")


#: How far a linear model's weights and intercepts rebuilt on another CPU may be from the committed ones. SGD takes
#: one step per phrase, each through the C library's exp and log, whose last bit differs between its FMA and plain
#: kernels; such differences (1e-16 relative) carry through the 10 passes over ~150,000 phrases but stay far below
#: what changes a prediction: the weights are ~1e-1 to 1e1, the logits of whole sentences ~1e0. Measured on an AMD
#: EPYC (AVX2, FMA) against the same build with every vector kernel off (the plain-kernels test below): weights apart
#: by at most 1.1e-14, intercepts by 1.1e-15, vocabularies, idf and the temperature identical.
LINEAR_WEIGHT_ATOL = 1e-9
LINEAR_FILES_EXACT = ("vectorizer.json", "idf.npy")  # vocabularies and idf: exact arithmetic, the same bits anywhere


def assert_same_as_committed(rebuilt: Path, name: str) -> None:
    """A rebuilt folder is the committed one: naive Bayes byte for byte, a linear model equivalent (see below)."""
    if specs.MODEL_SPECS[name].family == "linear":
        assert_equivalent_to_committed(rebuilt, name)
        return
    committed = json.loads((COMMITTED_MODELS / name / "manifest.json").read_text())
    fresh = json.loads((rebuilt / name / "manifest.json").read_text())
    assert fresh["data"] == committed["data"]
    assert fresh["params"] == committed["params"]
    assert fresh["metrics"] == committed["metrics"]
    assert fresh["version"] == committed["version"], "same data and code must give byte-identical artifacts"
    files = sorted(path.name for path in (COMMITTED_MODELS / name).iterdir())
    assert files == sorted(path.name for path in (rebuilt / name).iterdir())
    for filename in files:  # the manifest and report too
        assert (rebuilt / name / filename).read_bytes() == (COMMITTED_MODELS / name / filename).read_bytes(), filename


def assert_equivalent_to_committed(rebuilt: Path, name: str) -> None:
    """A rebuilt linear model: the same data, settings, vocabularies and idf to the bit, the same prediction for every
    validation sentence, and weights and intercepts within LINEAR_WEIGHT_ATOL (an iterative solver's last bits follow
    the CPU's maths kernels). On the machine that built the committed folders it is the same bytes, and a rebuild there
    leaves git clean."""
    committed = json.loads((COMMITTED_MODELS / name / "manifest.json").read_text())
    fresh = json.loads((rebuilt / name / "manifest.json").read_text())
    assert fresh["data"] == committed["data"]
    assert fresh["params"] == committed["params"]
    assert sorted(fresh["files"]) == sorted(committed["files"])
    for filename in LINEAR_FILES_EXACT:
        assert fresh["files"][filename] == committed["files"][filename], filename
    for filename in ("weights.npy", "intercept.npy"):
        np.testing.assert_allclose(
            np.load(rebuilt / name / filename), np.load(COMMITTED_MODELS / name / filename), rtol=0, atol=LINEAR_WEIGHT_ATOL
        )
    for metric in ("accuracy", "macro_f1"):  # from the predictions, which are the same
        assert fresh["metrics"]["sentences"][metric] == committed["metrics"]["sentences"][metric]
    spec = specs.MODEL_SPECS[name]
    _, validation = specs.split_by_sentence(util.load_phrases(KAGGLE_TRAIN))
    texts, _ = specs.evaluation_rows(spec, util.whole_sentences(validation))
    fresh_model, committed_model = NLPModel.load(rebuilt / name), NLPModel.load(COMMITTED_MODELS / name)
    fresh_probabilities, committed_probabilities = fresh_model.predict_texts(texts), committed_model.predict_texts(texts)
    np.testing.assert_array_equal(fresh_probabilities.argmax(axis=1), committed_probabilities.argmax(axis=1))
    np.testing.assert_allclose(fresh_probabilities, committed_probabilities, rtol=0, atol=LINEAR_WEIGHT_ATOL)


@needs_kaggle
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(specs.MODEL_SPECS))
def test_build_reproduces_committed_models(rebuilt: Path, name: str) -> None:
    assert_same_as_committed(rebuilt, name)
    phrases = util.whole_sentences(util.load_phrases(KAGGLE_TRAIN))["Phrase"].head(500).tolist()
    np.testing.assert_array_equal(
        NLPModel.load(rebuilt / name).predict_texts(phrases), NLPModel.load(COMMITTED_MODELS / name).predict_texts(phrases)
    )


def dispatched_features(environ: dict[str, str] | None = None) -> list[str]:
    """The CPU features NumPy dispatches kernels on that are in use in a Python started with ``environ``."""
    probe = "from numpy._core import _multiarray_umath as u; print(*[f for f in u.__cpu_dispatch__ if u.__cpu_features__[f]])"
    return subprocess.run([sys.executable, "-c", probe], env=environ, capture_output=True, text=True, check=True).stdout.split()


def openblas_kernels(environ: dict[str, str]) -> str:
    """The kernel family OpenBLAS picked in a Python started with ``environ``."""
    probe = "import numpy; from threadpoolctl import threadpool_info; print(threadpool_info()[0]['architecture'])"
    return subprocess.run([sys.executable, "-c", probe], env=environ, capture_output=True, text=True, check=True).stdout.strip()


@needs_kaggle
@pytest.mark.e2e
def test_build_without_avx512_kernels_reproduces_committed_models(tmp_path: Path) -> None:
    """The build on this CPU's AVX-512 kernels (make test) and, here, with NumPy's and OpenBLAS's AVX-512 code off."""
    found = [feature for feature in dispatched_features() if feature in AVX512]
    if not found:
        pytest.skip(
            "this CPU has no AVX-512, so make test's rebuild ran without it; "
            "test_build_on_plain_kernels_reproduces_committed_models turns off the kernels it has"
        )
    environ = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(found), "OPENBLAS_CORETYPE": "Haswell"}
    assert not set(dispatched_features(environ)) & set(AVX512), "NumPy still dispatches to AVX-512"
    assert openblas_kernels(environ) == "Haswell"
    out = BackgroundBuild(KAGGLE_TRAIN, tmp_path, environ).models()
    for name in specs.MODEL_SPECS:
        assert_same_as_committed(out, name)


@needs_kaggle
@pytest.mark.e2e
def test_build_on_plain_kernels_reproduces_committed_models(tmp_path: Path) -> None:
    """Every vector kernel off: NumPy's dispatched ones, OpenBLAS's, and the C library's FMA and AVX2 maths."""
    found = dispatched_features()
    environ = {
        **os.environ,
        "NPY_DISABLE_CPU_FEATURES": " ".join(found),
        "OPENBLAS_CORETYPE": "Nehalem",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F",
    }
    assert dispatched_features(environ) == [], f"NumPy still dispatches to {dispatched_features(environ)}"
    assert openblas_kernels(environ) == "Nehalem"
    out = BackgroundBuild(KAGGLE_TRAIN, tmp_path, environ).models()
    for name in specs.MODEL_SPECS:
        assert_same_as_committed(out, name)


@pytest.mark.parametrize("name", sorted(specs.MODEL_SPECS))
def test_committed_models_meet_the_floors(name: str) -> None:
    metrics = json.loads((COMMITTED_MODELS / name / "metrics.json").read_text())
    assert metrics["sentences"]["accuracy"] >= specs.MODEL_SPECS[name].sentence_accuracy_floor


def test_five_class_sentences_do_not_collapse_to_neutral() -> None:
    matrix = np.array(json.loads((COMMITTED_MODELS / "ratings" / "metrics.json").read_text())["sentences"]["confusion_matrix"])
    predicted_share = matrix.sum(axis=0) / matrix.sum()
    assert predicted_share.max() < 0.4, f"predicted label shares {predicted_share.round(2)}"
    assert (predicted_share > 0.05).all()


@needs_kaggle
@pytest.mark.slow
def test_fast_path_matches_scikit_learn_on_thousands_of_phrases() -> None:
    phrases = util.load_phrases(KAGGLE_TRAIN)["Phrase"].sample(3000, random_state=0).tolist()
    for name in specs.MODEL_SPECS:
        model = NLPModel.load(COMMITTED_MODELS / name)
        fast = np.array([model.score_one(text)[0] for text in phrases])
        expected = model.predict_texts(phrases)
        np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(model.score_texts(phrases)[0], expected, rtol=0, atol=1e-9)


CALIBRATED = sorted(name for name, spec in specs.MODEL_SPECS.items() if spec.calibrate)


@needs_kaggle
@pytest.mark.slow
@pytest.mark.parametrize("name", CALIBRATED)
def test_committed_calibration_equals_scikit_learn_on_thousands_of_phrases(name: str) -> None:
    """Temperature scaling fitted by scikit-learn on held-out sentences, then served: the same numbers."""
    phrases = util.load_phrases(KAGGLE_TRAIN)
    spec = specs.MODEL_SPECS[name]
    _, validation = specs.split_by_sentence(phrases)
    model = NLPModel.load(COMMITTED_MODELS / name)
    assert model.inverse_temperature_ == model.manifest["calibration"]["inverse_temperature"]
    calibrated = build_model.calibrate(model, "temperature", *specs.evaluation_rows(spec, util.whole_sentences(validation)))
    model.set_calibration(float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_))
    probes = phrases["Phrase"].sample(3000, random_state=1).tolist()
    expected = calibrated.predict_proba(probes)
    np.testing.assert_allclose(model.predict_texts(probes), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.score_texts(probes)[0], expected, rtol=0, atol=1e-9)
    # score_one equals predict_texts on 3,000 phrases (the test above), so it equals scikit-learn too.


@pytest.mark.parametrize("name", CALIBRATED)
def test_committed_calibration_lowers_the_error_and_keeps_accuracy(name: str) -> None:
    metrics = json.loads((COMMITTED_MODELS / name / "metrics.json").read_text())
    before, after = metrics["uncalibrated"]["sentences"], metrics["sentences"]
    assert after["ece"] < before["ece"] and after["brier"] < before["brier"]
    assert after["accuracy"] == before["accuracy"] and after["macro_f1"] == before["macro_f1"]
    assert (COMMITTED_MODELS / name / "reliability.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("name", sorted(set(specs.MODEL_SPECS) - set(CALIBRATED)))
def test_a_model_left_uncalibrated_says_why_and_serves_its_own_probabilities(name: str) -> None:
    manifest = json.loads((COMMITTED_MODELS / name / "manifest.json").read_text())
    assert manifest["calibration"]["method"] is None and "did not lower" in manifest["calibration"]["reason"]
    metrics = manifest["metrics"]
    for key in ("accuracy", "macro_f1", "brier", "ece"):
        assert metrics["sentences"][key] == metrics["uncalibrated"]["sentences"][key]
    assert NLPModel.load(COMMITTED_MODELS / name).inverse_temperature_ is None


def test_linear_models_beat_naive_bayes_on_the_validation_sentences() -> None:
    """The committed reports: each linear model against the naive Bayes model with the same labels."""
    for linear, naive_bayes in (("sentiment-logreg", "sentiment"), ("ratings-logreg", "ratings")):
        scores = {
            name: json.loads((COMMITTED_MODELS / name / "metrics.json").read_text())["sentences"]
            for name in (linear, naive_bayes)
        }
        assert scores[linear]["n"] == scores[naive_bayes]["n"]
        assert scores[linear]["accuracy"] > scores[naive_bayes]["accuracy"]


def test_committed_folders_stay_small() -> None:
    """Git keeps every rebuild: each folder at most 15 MB (the feature caps were chosen by measurement for it)."""
    for name in specs.MODEL_SPECS:
        size = sum(path.stat().st_size for path in (COMMITTED_MODELS / name).iterdir())
        assert size <= 15 * 1024 * 1024, f"{name}: {size:,} bytes"
