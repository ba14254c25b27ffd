"""NLPModel: the tutorial's methods, the fast path, and save/load with a verified manifest."""

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import model as model_module
from model import ModelLoadError, NLPModel

TEXTS = ["good fun film", "bad dull film", "great fun", "awful boring mess", "fun and good", "dull bad"]
LABELS = [1, 0, 1, 0, 1, 0]


def fitted(**vectorizer_params: object) -> NLPModel:
    model = NLPModel(("Negative", "Positive"), vectorizer_params, {"alpha": 0.5})
    model.vectorizer_fit(TEXTS)
    return model.train(model.vectorizer_transform(TEXTS), LABELS)


def test_tutorial_methods_classify() -> None:
    model = fitted()
    features = model.vectorizer_transform(np.array(["good fun", "dull mess"]))
    assert model.predict(features).tolist() == [1, 0]
    probabilities = model.predict_proba(features)
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "params",
    [{}, {"sublinear_tf": True, "ngram_range": (1, 2)}, {"binary": True}, {"norm": "l1"}, {"norm": None, "use_idf": False}],
)
def test_fast_path_equals_scikit_learn(params: dict) -> None:
    model = fitted(**params)
    texts = [*TEXTS, "", "unknown words only", "GOOD good good, bad!", "fun " * 50, "é ü ß 😀"]
    expected = model.predict_texts(texts)
    actual = np.array([model.predict_one(text) for text in texts])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = fitted()
    manifest = model.save(tmp_path, "sentiment", {"metrics": {"accuracy": 1.0}})
    assert manifest["version"].startswith("sentiment-")
    assert set(manifest["files"]) == {"vectorizer.pkl", "classifier.pkl"}
    loaded = NLPModel.load(tmp_path)
    assert loaded.labels == ("Negative", "Positive")
    assert loaded.version == manifest["version"]
    assert loaded.manifest["metrics"] == {"accuracy": 1.0}
    np.testing.assert_array_equal(loaded.predict_texts(TEXTS), model.predict_texts(TEXTS))


def test_same_model_saves_same_version(tmp_path: Path) -> None:
    first = fitted().save(tmp_path / "a", "m", {})
    second = fitted().save(tmp_path / "b", "m", {})
    assert first["files"] == second["files"] and first["version"] == second["version"]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    fitted().save(tmp_path / "m", "sentiment", {})
    return tmp_path / "m"


def test_missing_manifest_says_how_to_rebuild(saved: Path) -> None:
    (saved / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match=r"manifest.json: not found\. Rebuild the models with: python build_model.py"):
        NLPModel.load(saved)


@pytest.mark.parametrize("damage", ["truncate", "flip", "replace"])
def test_tampered_artifact_is_refused(saved: Path, damage: str) -> None:
    path = saved / "classifier.pkl"
    payload = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(payload[: len(payload) // 2])
    elif damage == "flip":
        path.write_bytes(payload[:-10] + bytes([payload[-10] ^ 1]) + payload[-9:])
    else:
        shutil.copy(saved / "vectorizer.pkl", path)
    with pytest.raises(ModelLoadError, match=r"classifier\.pkl: SHA-256 does not match manifest\.json"):
        NLPModel.load(saved)


def test_other_scikit_learn_version_is_refused(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["sklearn_version"] = "0.24.2"
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"built with scikit-learn 0\.24\.2, but .* is installed"):
        NLPModel.load(saved)


class _Exploit:
    """A pickle payload that would create a marker file if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pickle_outside_manifest_is_never_loaded(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (saved / "extra.pkl").write_bytes(pickle.dumps(_Exploit(marker)))
    NLPModel.load(saved)
    assert not marker.exists()


def test_manifest_naming_extra_file_is_refused(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    (saved / "extra.pkl").write_bytes(payload)
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["extra.pkl"] = hashlib.sha256(payload).hexdigest()
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="files must be exactly"):
        NLPModel.load(saved)
    assert not marker.exists()


def test_code_running_pickle_with_matching_hash_is_refused(saved: Path, tmp_path: Path) -> None:
    """Even a hash-consistent manifest cannot smuggle in code: the unpickler resolves no os/Path."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    (saved / "classifier.pkl").write_bytes(payload)
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["classifier.pkl"] = hashlib.sha256(payload).hexdigest()
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="cannot be unpickled safely"):
        NLPModel.load(saved)
    assert not marker.exists()


def test_unknown_manifest_format_is_refused(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["format"] = model_module.MANIFEST_FORMAT + 1
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="manifest format"):
        NLPModel.load(saved)
