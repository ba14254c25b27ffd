"""The committed models: what the README's build produces from the Kaggle data (skipped without it), and their reports."""

import json
from pathlib import Path

import numpy as np
import pytest

import build_model
import util
from model import NLPModel
from tests.helpers import COMMITTED_MODELS, KAGGLE_TRAIN, needs_kaggle


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rebuilt")
    assert build_model.main(["--data", str(KAGGLE_TRAIN), "--out", str(out)]) == 0
    return out


@needs_kaggle
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(build_model.MODEL_SPECS))
def test_build_reproduces_committed_models(rebuilt: Path, name: str) -> None:
    committed = json.loads((COMMITTED_MODELS / name / "manifest.json").read_text())
    fresh = json.loads((rebuilt / name / "manifest.json").read_text())
    assert fresh["data"] == committed["data"]
    assert fresh["params"] == committed["params"]
    assert fresh["metrics"] == committed["metrics"]
    assert fresh["version"] == committed["version"], "same data and code must give byte-identical artifacts"
    files = sorted(path.name for path in (COMMITTED_MODELS / name).iterdir())
    assert files == sorted(path.name for path in (rebuilt / name).iterdir())
    for filename in files:  # the manifest and report too: a rebuild leaves git clean
        assert (rebuilt / name / filename).read_bytes() == (COMMITTED_MODELS / name / filename).read_bytes(), filename
    phrases = util.whole_sentences(util.load_phrases(KAGGLE_TRAIN))["Phrase"].head(500).tolist()
    np.testing.assert_array_equal(
        NLPModel.load(rebuilt / name).predict_texts(phrases), NLPModel.load(COMMITTED_MODELS / name).predict_texts(phrases)
    )


@pytest.mark.parametrize("name", sorted(build_model.MODEL_SPECS))
def test_committed_models_meet_the_floors(name: str) -> None:
    metrics = json.loads((COMMITTED_MODELS / name / "metrics.json").read_text())
    assert metrics["sentences"]["accuracy"] >= build_model.MODEL_SPECS[name].sentence_accuracy_floor


def test_five_class_sentences_do_not_collapse_to_neutral() -> None:
    matrix = np.array(json.loads((COMMITTED_MODELS / "ratings" / "metrics.json").read_text())["sentences"]["confusion_matrix"])
    predicted_share = matrix.sum(axis=0) / matrix.sum()
    assert predicted_share.max() < 0.4, f"predicted label shares {predicted_share.round(2)}"
    assert (predicted_share > 0.05).all()


@needs_kaggle
@pytest.mark.slow
def test_fast_path_matches_scikit_learn_on_thousands_of_phrases() -> None:
    phrases = util.load_phrases(KAGGLE_TRAIN)["Phrase"].sample(3000, random_state=0).tolist()
    for name in build_model.MODEL_SPECS:
        model = NLPModel.load(COMMITTED_MODELS / name)
        fast = np.array([model.predict_one(text) for text in phrases])
        expected = model.predict_texts(phrases)
        np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(model.score_texts(phrases)[0], expected, rtol=0, atol=1e-9)


@needs_kaggle
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(build_model.MODEL_SPECS))
def test_committed_calibration_equals_scikit_learn_on_thousands_of_phrases(name: str) -> None:
    """Temperature scaling fitted by scikit-learn on held-out sentences, then served: the same numbers."""
    phrases = util.load_phrases(KAGGLE_TRAIN)
    spec = build_model.MODEL_SPECS[name]
    _, validation = build_model.split_by_sentence(phrases)
    model = NLPModel.load(COMMITTED_MODELS / name)
    assert model.inverse_temperature_ == model.manifest["calibration"]["inverse_temperature"]
    calibrated = build_model.calibrate(model, "temperature", *build_model.evaluation_rows(spec, util.whole_sentences(validation)))
    model.set_calibration(float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_))
    probes = phrases["Phrase"].sample(3000, random_state=1).tolist()
    expected = calibrated.predict_proba(probes)
    np.testing.assert_allclose(model.predict_texts(probes), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.score_texts(probes)[0], expected, rtol=0, atol=1e-9)
    # predict_one equals predict_texts on 3,000 phrases (the test above), so it equals scikit-learn too.


@pytest.mark.parametrize("name", sorted(build_model.MODEL_SPECS))
def test_committed_calibration_lowers_the_error_and_keeps_accuracy(name: str) -> None:
    metrics = json.loads((COMMITTED_MODELS / name / "metrics.json").read_text())
    before, after = metrics["uncalibrated"]["sentences"], metrics["sentences"]
    assert after["ece"] < before["ece"] and after["brier"] < before["brier"]
    assert after["accuracy"] == before["accuracy"] and after["macro_f1"] == before["macro_f1"]
    assert (COMMITTED_MODELS / name / "reliability.png").read_bytes().startswith(b"\x89PNG")
