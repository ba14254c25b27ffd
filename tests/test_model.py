"""NLPModel: the tutorial's methods, the fast path, and save/load with a verified manifest."""

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import stat
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline

from lib import scoring
from lib.calibration import softmax
from model import ARTIFACT_FILES, TEMPERATURE_FILE, ModelLoadError, NLPModel
from tests.helpers import COMMITTED_MODELS, TINY_SENTENCES, gadgets, plant, rewrite_manifest

TEXTS = ["good fun film", "bad dull film", "great fun", "awful boring mess", "fun and good", "dull bad"]
LABELS = [1, 0, 1, 0, 1, 0]
#: Every file a calibrated model folder holds.
CALIBRATED_FILES = (*ARTIFACT_FILES, TEMPERATURE_FILE)


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
    actual = np.array([model.score_one(text)[0] for text in texts])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    """An uncalibrated model (a data scientist's own, say) saves and loads as it always did: no calibration file."""
    model = fitted()
    manifest = model.save(tmp_path, "sentiment", {"metrics": {"accuracy": 1.0}})
    assert manifest["version"].startswith("sentiment-")
    assert set(manifest["files"]) == set(ARTIFACT_FILES)
    assert not (tmp_path / TEMPERATURE_FILE).exists()
    loaded = NLPModel.load(tmp_path)
    assert loaded.inverse_temperature_ is None
    assert loaded.labels == ("Negative", "Positive")
    assert loaded.version == manifest["version"]
    assert loaded.manifest["metrics"] == {"accuracy": 1.0}
    texts = [*TEXTS, "", "unknown", "good good bad"]
    np.testing.assert_array_equal(loaded.predict_texts(texts), model.predict_texts(texts))
    np.testing.assert_allclose([loaded.score_one(text)[0] for text in texts], model.predict_texts(texts), rtol=0, atol=1e-12)
    assert loaded.predict(loaded.vectorizer_transform(["good fun"])).tolist() == [1]


def test_saved_folder_holds_no_pickle(tmp_path: Path) -> None:
    fitted(ngram_range=(1, 2), sublinear_tf=True).save(tmp_path, "m", {})
    for path in tmp_path.iterdir():
        payload = path.read_bytes()
        assert not payload.startswith(b"\x80"), f"{path.name} is a pickle"
        if path.suffix == ".npy":
            assert np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False).dtype == np.float64


def test_same_model_saves_same_bytes(tmp_path: Path) -> None:
    first = fitted().save(tmp_path / "a", "m", {})
    second = fitted().save(tmp_path / "b", "m", {})
    assert first["files"] == second["files"] and first["version"] == second["version"]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()


def test_callables_cannot_be_saved(tmp_path: Path) -> None:
    model = NLPModel(("a", "b"), {"tokenizer": str.split, "token_pattern": None})
    model.vectorizer_fit(TEXTS).train(model.vectorizer_transform(TEXTS), LABELS)
    with pytest.raises(ValueError, match=r"tokenizer=.* cannot be saved as data"):
        model.save(tmp_path, "m", {})


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A calibrated model folder, so every refusal below covers the calibration file too."""
    fitted().set_calibration(1.7).save(tmp_path / "m", "sentiment", {})
    return tmp_path / "m"


def refused(folder: Path, match: str) -> str:
    """Load a folder that must be refused; return the one-line message."""
    with pytest.raises(ModelLoadError, match=match) as caught:
        NLPModel.load(folder)
    message = str(caught.value)
    assert "\n" not in message and "Rebuild the models with" in message
    return message


def test_missing_manifest_says_how_to_rebuild(saved: Path) -> None:
    (saved / "manifest.json").unlink()
    refused(saved, r"manifest.json: not found\. Rebuild the models with: python build_model.py")


@pytest.mark.parametrize("filename", CALIBRATED_FILES)
@pytest.mark.parametrize("damage", ["truncate", "flip", "replace"])
def test_tampered_artifact_is_refused(saved: Path, filename: str, damage: str) -> None:
    path = saved / filename
    payload = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(payload[: len(payload) // 2])
    elif damage == "flip":
        path.write_bytes(payload[:-10] + bytes([payload[-10] ^ 1]) + payload[-9:])
    else:
        other = next(name for name in CALIBRATED_FILES if name != filename)
        shutil.copy(saved / other, path)
    refused(saved, rf"{re.escape(filename)}: SHA-256 does not match manifest\.json")


def test_other_scikit_learn_version_is_refused(saved: Path) -> None:
    rewrite_manifest(saved, sklearn_version="0.24.2")
    refused(saved, r"built with scikit-learn 0\.24\.2, but .* is installed")


def test_edited_version_is_refused(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["version"] = "sentiment-000000000000"
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, r"version 'sentiment-000000000000' does not match the content")


def test_version_follows_the_labels(saved: Path) -> None:
    before = NLPModel.load(saved).version
    rewrite_manifest(saved, labels=["bad", "good"])
    after = NLPModel.load(saved)
    assert after.labels == ("bad", "good") and after.version != before


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ([["Negative"], ["Positive"]], "labels must be a list of at least two non-empty strings"),
        (["Negative", ""], "labels must be a list of at least two non-empty strings"),
        (["Negative", "   "], "labels must be a list of at least two non-empty strings"),
        (["Negative"], "labels must be a list of at least two non-empty strings"),
        ("Negative,Positive", "labels must be a list of at least two non-empty strings"),
        (["Same", "Same"], "labels must be distinct"),
        (["a", "b", "c"], r"weights\.npy: holds float64 \(2, \d+\), expected float64 \(3, \d+\)"),
    ],
)
def test_bad_labels_are_refused(saved: Path, labels: object, match: str) -> None:
    rewrite_manifest(saved, labels=labels)
    refused(saved, match)


@pytest.mark.parametrize(
    "manifest",
    [[], "x", {"format": 2}, {"format": 1, "files": {"vectorizer.pkl": "0" * 64}}, {"format": 2, "name": "", "version": "v"}],
)
def test_malformed_manifest_is_refused(saved: Path, manifest: object) -> None:
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, r"manifest\.json: ")


def test_pickle_era_manifest_says_to_rebuild(saved: Path) -> None:
    rewrite_manifest(saved, format=1)
    assert "pickles, which are never loaded" in refused(saved, "manifest format 1, expected 3")


def test_naive_bayes_only_format_says_to_rebuild(saved: Path) -> None:
    """Format 2 held one word block and naive Bayes' arrays under their own names: refused in one line, rebuild."""
    rewrite_manifest(saved, format=2)
    assert "format 2 held naive Bayes alone" in refused(saved, "manifest format 2, expected 3")


@pytest.mark.parametrize("family", ["logistic_regression", None, ["linear"]])
def test_unknown_family_is_refused(saved: Path, family: object) -> None:
    rewrite_manifest(saved, family=family)
    refused(saved, r"manifest\.json: family .* is not one of naive_bayes, linear")


def test_naive_bayes_weights_marked_linear_load_with_the_same_answers(saved: Path) -> None:
    """The family picks the value checks; the arithmetic is one: a naive Bayes folder read as linear answers alike."""
    texts = [*TEXTS, "", "good good bad"]
    before = NLPModel.load(saved)
    rewrite_manifest(saved, family="linear")
    after = NLPModel.load(saved)
    assert after.family == "linear" and after.version != before.version  # the family is part of the version
    np.testing.assert_allclose(after.predict_texts(texts), before.predict_texts(texts), rtol=0, atol=1e-12)


def test_deeply_nested_json_is_refused(saved: Path) -> None:
    plant(saved, "vectorizer.json", b"[" * 100_000 + b"]" * 100_000)
    refused(saved, r"vectorizer\.json: ")
    (saved / "manifest.json").write_bytes(b"[" * 30_000 + b"]" * 30_000)  # within the manifest's cap
    refused(saved, r"manifest\.json: not valid JSON")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"analyzer": "evil"}, "analyzer is 'evil'"),
        ({"input": "filename"}, "params must hold exactly"),
        ({"binary": "yes"}, "binary must be true or false"),
        ({"ngram_range": [1, 1000]}, "ngram_range must be"),
        ({"token_pattern": "(a)(b)"}, "token_pattern '\\(a\\)\\(b\\)' is not one of"),
        ({"token_pattern": "("}, "token_pattern '\\(' is not one of"),
        ({"token_pattern": None}, "token_pattern None is not one of"),
        ({"stop_words": {"a": 1}}, "stop_words must be"),
    ],
)
def test_bad_vectorizer_settings_are_refused(saved: Path, change: dict, match: str) -> None:
    saved_vectorizer = json.loads((saved / "vectorizer.json").read_text())
    saved_vectorizer["blocks"][0]["params"].update(change)
    plant(saved, "vectorizer.json", json.dumps(saved_vectorizer).encode())
    refused(saved, rf"vectorizer\.json: .*{match}")


def test_duplicate_vocabulary_is_refused(saved: Path) -> None:
    saved_vectorizer = json.loads((saved / "vectorizer.json").read_text())
    block = saved_vectorizer["blocks"][0]
    block["vocabulary"][1] = block["vocabulary"][0]
    plant(saved, "vectorizer.json", json.dumps(saved_vectorizer).encode())
    refused(saved, "vocabulary terms must be distinct")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("filename", ["intercept.npy", TEMPERATURE_FILE])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_arrays_are_refused(saved: Path, filename: str, value: float) -> None:
    array = np.lib.format.read_array(io.BytesIO((saved / filename).read_bytes()))
    array[0] = value
    plant(saved, filename, npy(array))
    refused(saved, rf"{re.escape(filename)}: holds values that are not finite")


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.array([0.0]), "inverse temperature 0.0 is outside"),
        (np.array([-1.3]), "inverse temperature -1.3 is outside"),
        (np.array([1e9]), "inverse temperature 1000000000.0 is outside"),
        (np.array([1.3, 1.3]), r"holds float64 \(2,\), expected float64 \(1,\)"),
        (np.array(1.3), r"holds float64 \(\), expected float64 \(1,\)"),
        (np.array([1.3], dtype=np.float32), r"holds float32 \(1,\), expected float64 \(1,\)"),
        (np.array([1], dtype=np.int64), r"holds int64 \(1,\), expected float64"),
    ],
)
def test_bad_calibration_is_refused(saved: Path, array: np.ndarray, match: str) -> None:
    plant(saved, TEMPERATURE_FILE, npy(array))
    refused(saved, rf"{re.escape(TEMPERATURE_FILE)}: {match}")


def test_calibration_named_but_missing_is_refused(saved: Path) -> None:
    (saved / TEMPERATURE_FILE).unlink()
    refused(saved, rf"{re.escape(TEMPERATURE_FILE)}: not found")


def test_calibration_dropped_from_the_manifest_is_refused(saved: Path) -> None:
    """Deleting the calibration's entry changes the version: the manifest's own version check refuses it."""
    manifest = json.loads((saved / "manifest.json").read_text())
    del manifest["files"][TEMPERATURE_FILE]
    (saved / "manifest.json").write_text(json.dumps(manifest))
    refused(saved, "does not match the content it names")


# --- payloads that would run code if anything in the load path unpickled them -------------------

GADGET_NAMES = sorted(gadgets(Path("/nonexistent")))


@pytest.mark.parametrize("gadget", GADGET_NAMES)
def test_gadgets_really_run_code_when_unpickled(tmp_path: Path, gadget: str) -> None:
    """The payloads below are live: a plain unpickler runs them (so refusing them means something)."""
    marker = tmp_path / "pwned"
    payload = gadgets(marker)[gadget]
    if gadget == "object-npy":
        np.load(io.BytesIO(payload), allow_pickle=True)
    else:
        pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize("gadget", GADGET_NAMES)
@pytest.mark.parametrize("filename", CALIBRATED_FILES)
def test_code_running_artifact_is_refused_without_running(saved: Path, tmp_path: Path, filename: str, gadget: str) -> None:
    marker = tmp_path / "pwned"
    plant(saved, filename, gadgets(marker)[gadget])
    refused(saved, re.escape(str(saved / filename)))
    assert not marker.exists()


@pytest.mark.parametrize("gadget", GADGET_NAMES)
def test_code_running_manifest_is_refused_without_running(saved: Path, tmp_path: Path, gadget: str) -> None:
    marker = tmp_path / "pwned"
    (saved / "manifest.json").write_bytes(gadgets(marker)[gadget])
    refused(saved, re.escape(str(saved / "manifest.json")))
    assert not marker.exists()


def test_files_outside_the_manifest_are_never_read(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (saved / "extra.pkl").write_bytes(gadgets(marker)["os.system"])
    NLPModel.load(saved)
    manifest = json.loads((saved / "manifest.json").read_text())
    rewrite_manifest(saved, files={**manifest["files"], "extra.pkl": hashlib.sha256(b"x").hexdigest()})
    refused(saved, "files must be exactly")
    assert not marker.exists()


# --- files that are not plain files -------------------------------------------------------------


def load_within(folder: Path, seconds: float = 10) -> BaseException | None:
    """Load in a thread and return what it raised; fail if it blocks."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            NLPModel.load(folder)
            outcome.append(None)
        except BaseException as exc:  # handed back to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"loading {folder} blocked for {seconds}s"
    return outcome[0]


@pytest.mark.parametrize("filename", ["manifest.json", *CALIBRATED_FILES])
def test_fifo_is_refused_without_blocking(saved: Path, filename: str) -> None:
    (saved / filename).unlink()
    os.mkfifo(saved / filename)
    error = load_within(saved)
    assert isinstance(error, ModelLoadError) and f"{filename}: not a regular file" in str(error)


def test_device_is_refused(saved: Path) -> None:
    (saved / "idf.npy").unlink()
    try:
        os.mknod(saved / "idf.npy", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # like /dev/zero: endless bytes
    except PermissionError:
        pytest.skip("creating a device node needs privileges this user does not have")
    error = load_within(saved)
    assert isinstance(error, ModelLoadError) and "idf.npy: not a regular file" in str(error)


def test_link_out_of_the_folder_is_refused(saved: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.npy"
    shutil.move(saved / "idf.npy", outside)
    (saved / "idf.npy").symlink_to(outside)
    refused(saved, r"idf\.npy: links outside the model folder")
    (saved / "idf.npy").unlink()
    (saved / "idf.npy").symlink_to("/dev/zero")
    refused(saved, r"idf\.npy: links outside the model folder")


def test_links_inside_the_folder_are_followed(saved: Path) -> None:
    """Mounted volumes (a Kubernetes ConfigMap, say) present files as links within the folder."""
    data = saved / "..data"
    data.mkdir()
    for filename in CALIBRATED_FILES:
        shutil.move(saved / filename, data / filename)
        (saved / filename).symlink_to(Path("..data") / filename)
    assert NLPModel.load(saved).labels == ("Negative", "Positive")


@pytest.mark.parametrize("params", [{}, {"sublinear_tf": True, "ngram_range": (1, 2)}, {"binary": True}, {"norm": "l1"}])
def test_scoring_paths_equal_scikit_learn_and_count_terms(params: dict) -> None:
    model = fitted(**params)
    texts = [*TEXTS, "", "unknown words only", "GOOD good good, bad!", "fun " * 50, "é ü ß 😀"]
    expected = model.predict_texts(texts)
    probabilities, coverage = model.score_texts(texts)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-12)
    for text, row, counts in zip(texts, expected, coverage.tolist(), strict=True):
        one, known, terms = model.score_one(text)
        np.testing.assert_allclose(one, row, rtol=0, atol=1e-12)
        analyzed = model.vectorizer.build_analyzer()(text)
        assert counts == [known, terms] == [sum(term in model.vectorizer.vocabulary_ for term in analyzed), len(analyzed)]


# --- calibration: temperature scaling, the same on every path as in scikit-learn -----------------

FIVE_TEXTS = [
    "awful dull mess",
    "weak tired plot",
    "a film about a town",
    "nice warm story",
    "brilliant wonderful film",
]
FIVE_LABELS = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")


def held_out(texts: list[str], labels: list[int], copies: int = 6) -> tuple[list[str], np.ndarray]:
    """Labelled texts to calibrate on: variations of the training texts, enough of each class for scikit-learn's five folds."""
    variations = [f"{text} {extra}" for extra in ("", "film", "plot", "good", "bad", "story")[:copies] for text in texts]
    return variations, np.array(labels * copies)


def sklearn_calibrated(model: NLPModel, texts: list[str], y: np.ndarray) -> CalibratedClassifierCV:
    """scikit-learn's temperature scaling of the model's (uncalibrated) pipeline, fitted on held-out texts."""
    frozen = FrozenEstimator(make_pipeline(model.vectorizer, model.clf))
    return CalibratedClassifierCV(frozen, method="temperature").fit(texts, y)


def five_class_model() -> NLPModel:
    model = NLPModel(FIVE_LABELS, {"ngram_range": (1, 2), "sublinear_tf": True}, {"alpha": 0.3, "fit_prior": False})
    model.vectorizer_fit(FIVE_TEXTS)
    return model.train(model.vectorizer_transform(FIVE_TEXTS), list(range(5)))


PROBES = [*TEXTS, *FIVE_TEXTS, "", "unknown words only", "GOOD good good, bad!", "fun " * 50, "é ü ß 😀", "dull dull dull dull"]


@pytest.mark.parametrize("kind", ["binary", "five classes"])
def test_calibration_equals_scikit_learn_on_every_path(kind: str) -> None:
    model = fitted(ngram_range=(1, 2), sublinear_tf=True) if kind == "binary" else five_class_model()
    texts, y = held_out(TEXTS, LABELS) if kind == "binary" else held_out(FIVE_TEXTS, list(range(5)))
    calibrated = sklearn_calibrated(model, texts, y)
    beta = float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_)
    assert abs(beta - 1) > 0.05, "a calibration that changes nothing would prove nothing"
    expected = calibrated.predict_proba(PROBES)
    model.set_calibration(beta)
    np.testing.assert_allclose(model.predict_texts(PROBES), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.score_texts(PROBES)[0], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose([model.score_one(text)[0] for text in PROBES], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose([model.score_one(text)[0] for text in PROBES], expected, rtol=0, atol=1e-9)


def test_calibration_keeps_labels_and_survives_save_and_load(tmp_path: Path) -> None:
    model = five_class_model()
    raw = model.predict_texts(PROBES)
    model.set_calibration(0.6)
    softened = model.predict_texts(PROBES)
    np.testing.assert_array_equal(softened.argmax(axis=1), raw.argmax(axis=1))
    assert (softened.max(axis=1) <= raw.max(axis=1) + 1e-12).all() and (softened.max(axis=1) < raw.max(axis=1)).any()
    manifest = model.save(tmp_path, "ratings", {})
    assert set(manifest["files"]) == set(CALIBRATED_FILES)
    loaded = NLPModel.load(tmp_path)
    assert loaded.inverse_temperature_ == 0.6
    np.testing.assert_array_equal(loaded.predict_texts(PROBES), softened)
    np.testing.assert_allclose([loaded.score_one(text)[0] for text in PROBES], softened, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.set_calibration(None).predict_texts(PROBES), raw)
    assert model.save(tmp_path / "raw", "ratings", {})["version"] != manifest["version"]


def test_vocabulary_cap_breaks_ties_by_term_not_by_the_cpus_sort() -> None:
    """Six terms seen twice each, room for four: the four that sort first, whatever NumPy's sort does on this CPU."""
    texts = ["zeta alpha", "delta beta", "gamma epsilon", "zeta alpha", "delta beta", "gamma epsilon", "omega"]
    model = NLPModel(["a", "b"], {"max_features": 4}).vectorizer_fit(texts)
    assert sorted(model.vectorizer.vocabulary_) == ["alpha", "beta", "delta", "epsilon"]
    assert model.vectorizer.vocabulary_ == {"alpha": 0, "beta": 1, "delta": 2, "epsilon": 3}  # columns in term order
    assert model.vectorizer.get_params()["vocabulary"] is None  # the saved settings are what was asked for


@pytest.mark.parametrize(
    "settings",
    [
        {"ngram_range": (1, 2), "sublinear_tf": True},
        {"min_df": 2, "max_df": 0.5, "binary": True},
        {"max_features": 3},
        {"max_features": 3, "use_idf": False},
    ],
)
def test_vocabulary_and_weights_are_scikit_learns_where_there_is_no_tie(settings: dict) -> None:
    texts = ["a fine film", "a dull film", "fine acting, dull plot", "fine fine film", "plot twist", "dull"] * 3
    ours = NLPModel(["a", "b"], settings).vectorizer_fit(texts).vectorizer
    reference = TfidfVectorizer(**settings).fit(texts)
    assert ours.vocabulary_ == reference.vocabulary_
    if reference.use_idf:
        np.testing.assert_allclose(ours.idf_, reference.idf_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.transform(texts).toarray(), reference.transform(texts).toarray(), rtol=0, atol=1e-12)


# --- the linear family: several feature blocks, one weight matrix ---------------------------------------------------

WORDS_AND_CHARACTERS = (
    {"ngram_range": (1, 2), "sublinear_tf": True},
    {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "strip_accents": "unicode"},
)
TINY_TEXTS = [text for _, text in TINY_SENTENCES] + ["good fun film", "bad dull film", "great fun", "awful boring mess"]
TINY_RATINGS = [rating for rating, _ in TINY_SENTENCES] + [4, 0, 3, 1]
LINEAR_CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    "logistic binary": ("logistic_regression", {"C": 10.0}, 2),
    "logistic five classes": ("logistic_regression", {"C": 10.0}, 5),
    "sgd hinge": ("sgd", {"loss": "hinge", "alpha": 1e-3}, 5),
    "linear svc": ("linear_svc", {"C": 0.5}, 2),
}
LINEAR_PROBES = [*PROBES, *TINY_TEXTS, "a  wonderful\tfilm\n", "Café CAFÉ cafe\u0301", "x" * 300, "İstanbul ﬁlm"]


def linear_model(case: str) -> NLPModel:
    """A fitted linear model of the case's classifier over word and char_wb blocks, on the tiny sentences."""
    classifier, params, labels = LINEAR_CASES[case]
    y = [int(rating >= 3) for rating in TINY_RATINGS] if labels == 2 else TINY_RATINGS
    model = NLPModel(
        FIVE_LABELS[:labels] if labels == 5 else ("Negative", "Positive"),
        classifier_params=params,
        family="linear",
        blocks=WORDS_AND_CHARACTERS,
        classifier=classifier,
    )
    model.vectorizer_fit(TINY_TEXTS)
    return model.train(model.vectorizer_transform(TINY_TEXTS), y)


def sklearn_scores(model: NLPModel, texts: list[str]) -> np.ndarray:
    """The fitted scikit-learn estimator's own probabilities, or its margins' softmax, over scikit-learn's own TF-IDF."""
    estimator = model.clf.estimator_
    features = model.vectorizer.transform(texts)  # the FeatureUnion of TfidfVectorizers: scikit-learn's arithmetic
    if isinstance(estimator, LogisticRegression):
        return estimator.predict_proba(features)
    margins = estimator.decision_function(features)
    return softmax(np.column_stack([np.zeros_like(margins), margins]) if margins.ndim == 1 else margins)


@pytest.mark.parametrize("case", sorted(LINEAR_CASES))
def test_linear_models_save_load_and_score_as_scikit_learn(tmp_path: Path, case: str) -> None:
    model = linear_model(case)
    expected = sklearn_scores(model, LINEAR_PROBES)
    np.testing.assert_allclose(model.predict_texts(LINEAR_PROBES), expected, rtol=0, atol=1e-9)
    manifest = model.save(tmp_path, "m", {})
    assert manifest["family"] == "linear" and set(manifest["files"]) == set(ARTIFACT_FILES)
    loaded = NLPModel.load(tmp_path)
    assert loaded.family == "linear" and len(loaded.vectorizers) == 2 and loaded.version == manifest["version"]
    np.testing.assert_array_equal(loaded.predict_texts(LINEAR_PROBES), model.predict_texts(LINEAR_PROBES))
    np.testing.assert_allclose(loaded.score_texts(LINEAR_PROBES)[0], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose([loaded.score_one(text)[0] for text in LINEAR_PROBES], expected, rtol=0, atol=1e-9)
    assert loaded.predict(loaded.vectorizer_transform(LINEAR_PROBES)).tolist() == expected.argmax(axis=1).tolist()


@pytest.mark.parametrize(
    "blocks",
    [
        ({"binary": True, "norm": "l1"}, {"analyzer": "char_wb", "ngram_range": (2, 4), "sublinear_tf": True}),
        ({"ngram_range": (1, 2), "use_idf": False}, {"analyzer": "char_wb", "ngram_range": (3, 5), "norm": None}),
        (
            {"analyzer": "char_wb", "ngram_range": (2, 3), "binary": True},
            {"ngram_range": (1, 1), "sublinear_tf": True},
            {"analyzer": "char_wb", "ngram_range": (4, 5), "norm": "l1"},
        ),
    ],
    ids=["binary words, l1 characters", "words without idf, characters unnormalized", "three blocks, characters first"],
)
def test_one_text_weighs_each_block_by_its_own_settings_as_scikit_learn(blocks: tuple[dict[str, Any], ...]) -> None:
    """The single-text path counts every block's terms together, then weighs and normalizes each block's own columns."""
    model = NLPModel(("Negative", "Positive"), family="linear", blocks=blocks, classifier_params={"C": 10.0})
    model.vectorizer_fit(TINY_TEXTS)
    model.train(model.vectorizer_transform(TINY_TEXTS), [int(rating >= 3) for rating in TINY_RATINGS])
    expected = sklearn_scores(model, LINEAR_PROBES)
    np.testing.assert_allclose([model.score_one(text)[0] for text in LINEAR_PROBES], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.score_texts(LINEAR_PROBES)[0], expected, rtol=0, atol=1e-9)


def test_a_binary_linear_model_is_two_rows_whose_softmax_is_its_sigmoid() -> None:
    model = linear_model("logistic binary")
    estimator = model.clf.estimator_
    assert estimator.coef_.shape[0] == 1 and model.clf.coef_.shape[0] == 2
    np.testing.assert_array_equal(model.clf.coef_[0], 0.0)
    np.testing.assert_array_equal(model.clf.coef_[1], estimator.coef_[0])
    assert model.clf.intercept_.tolist() == [0.0, estimator.intercept_[0]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=5))
def test_logistic_regression_fast_paths_equal_scikit_learn_on_any_text(texts: list[str]) -> None:
    for case in ("logistic binary", "logistic five classes"):
        model = LINEAR_MODELS[case]
        expected = sklearn_scores(model, texts)
        np.testing.assert_allclose(model.score_texts(texts)[0], expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose([model.score_one(text)[0] for text in texts], expected, rtol=0, atol=1e-9)


LINEAR_MODELS = {case: linear_model(case) for case in ("logistic binary", "logistic five classes")}


def test_blocks_are_scikit_learns_tf_idf_side_by_side_each_normalized_alone() -> None:
    model = linear_model("logistic five classes")
    ours = model.vectorizer_transform(LINEAR_PROBES)
    reference = model.vectorizer.transform(LINEAR_PROBES)
    assert ours.shape == reference.shape == (len(LINEAR_PROBES), sum(len(v.vocabulary_) for v in model.vectorizers))
    np.testing.assert_allclose(ours.toarray(), reference.toarray(), rtol=0, atol=1e-12)
    words = len(model.vectorizers[0].vocabulary_)
    for block in (ours[:, :words], ours[:, words:]):
        lengths = np.sqrt(np.asarray(block.multiply(block).sum(axis=1)).ravel())
        assert np.all((np.abs(lengths - 1) < 1e-12) | (lengths == 0))


def test_coverage_counts_the_first_blocks_terms() -> None:
    """How much of a text the model knew is said in words and word pairs, not in character n-grams."""
    model = linear_model("logistic binary")
    _, known, terms = model.score_one("wonderful zzqx film")
    assert (known, terms) == (2, 5)  # wonderful, film; of those, zzqx and the two word pairs
    np.testing.assert_array_equal(model.score_texts(["wonderful zzqx film"])[1], [[2, 5]])


@pytest.mark.parametrize("case", ["logistic five classes", "linear svc"])
def test_linear_calibration_equals_scikit_learn_on_every_path(tmp_path: Path, case: str) -> None:
    model = linear_model(case)
    texts, y = held_out(TINY_TEXTS[:12], [int(r >= 3) for r in TINY_RATINGS[:12]] if case == "linear svc" else TINY_RATINGS[:12])
    calibrated = sklearn_calibrated(model, texts, y)
    beta = float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_)
    expected = calibrated.predict_proba(LINEAR_PROBES)
    model.set_calibration(beta).save(tmp_path, "m", {})
    loaded = NLPModel.load(tmp_path)
    np.testing.assert_allclose(loaded.score_texts(LINEAR_PROBES)[0], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose([loaded.score_one(text)[0] for text in LINEAR_PROBES], expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"family": "forest"}, "family 'forest' is not one of naive_bayes, linear"),
        ({"classifier": "sgd"}, "classifier='sgd' is for the linear family"),
        ({"family": "linear", "classifier": "tree"}, "classifier 'tree' is not one of logistic_regression, linear_svc, sgd"),
        ({"vectorizer_params": {}, "blocks": [{}]}, "not both"),
        ({"blocks": []}, "at least one feature block"),
    ],
)
def test_bad_model_choices_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NLPModel(("a", "b"), **kwargs)


@pytest.mark.parametrize("family", ["naive_bayes", "linear"])
def test_a_label_with_no_training_text_is_refused(family: str) -> None:
    model = NLPModel(FIVE_LABELS, family=family).vectorizer_fit(TEXTS)
    with pytest.raises(ValueError, match=r"class indices 0 to 4, each at least once; got \[0, 1\]"):
        model.train(model.vectorizer_transform(TEXTS), LABELS)


@pytest.mark.parametrize("name", ["sentiment", "ratings"])
def test_committed_naive_bayes_models_save_again_to_the_same_bytes(tmp_path: Path, name: str) -> None:
    """Loaded and saved again, a committed model is the same files: the format holds naive Bayes exactly."""
    committed = NLPModel.load(COMMITTED_MODELS / name)
    fixed = {"format", "name", "version", "family", "labels", "files", "sklearn_version", "python_version"}
    manifest = committed.save(tmp_path, name, {key: value for key, value in committed.manifest.items() if key not in fixed})
    assert manifest["family"] == "naive_bayes"
    assert manifest["files"] == committed.manifest["files"] and manifest["version"] == committed.version
    np.testing.assert_array_equal(NLPModel.load(tmp_path).predict_texts(LINEAR_PROBES), committed.predict_texts(LINEAR_PROBES))


def test_naive_bayes_probabilities_are_scikit_learns_through_the_format(tmp_path: Path) -> None:
    """The same tiny model built with scikit-learn alone and through NLPModel, save and load: the same probabilities."""
    params = {"ngram_range": (1, 2), "sublinear_tf": True}
    model = NLPModel([str(rating) for rating in range(5)], params, {"alpha": 0.3})
    model.vectorizer_fit(TINY_TEXTS).train(model.vectorizer_transform(TINY_TEXTS), TINY_RATINGS).save(tmp_path, "m", {})
    reference = make_pipeline(TfidfVectorizer(**params), MultinomialNB(alpha=0.3)).fit(TINY_TEXTS, TINY_RATINGS)
    loaded = NLPModel.load(tmp_path)
    expected = reference.predict_proba(LINEAR_PROBES)
    np.testing.assert_allclose(loaded.predict_texts(LINEAR_PROBES), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.score_texts(LINEAR_PROBES)[0], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose([loaded.score_one(text)[0] for text in LINEAR_PROBES], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "blocks", [WORDS_AND_CHARACTERS, ({"binary": True, "norm": "l1"}, {"analyzer": "char_wb", "norm": None})]
)
def test_one_text_counts_beyond_the_term_frequency_table_weigh_as_scikit_learn(blocks: tuple[dict[str, Any], ...]) -> None:
    """A count beyond the table ("film" hundreds of times in one text) has its weight computed."""
    model = NLPModel(("Negative", "Positive"), family="linear", blocks=blocks, classifier_params={"C": 10.0})
    model.vectorizer_fit(TINY_TEXTS)
    model.train(model.vectorizer_transform(TINY_TEXTS), [int(rating >= 3) for rating in TINY_RATINGS])
    texts = ["wonderful film " * 400, "awful " * 900 + "film"]
    characters = model._scoring_path().blocks[1]
    assert all(characters.occurrences(text)[1] > scoring.TF_TABLE_SIZE for text in texts)
    expected = sklearn_scores(model, texts)
    np.testing.assert_allclose([model.score_one(text)[0] for text in texts], expected, rtol=0, atol=1e-9)


def test_one_text_weighs_alike_with_and_without_the_term_frequency_table(monkeypatch: pytest.MonkeyPatch) -> None:
    model = linear_model("logistic five classes")
    tabled = [model.score_one(text)[0] for text in LINEAR_PROBES]
    monkeypatch.setattr(scoring, "TF_TABLE_SIZE", 1)  # every text computes its term frequencies
    computed = [model.score_one(text)[0] for text in LINEAR_PROBES]
    np.testing.assert_allclose(computed, tabled, rtol=0, atol=1e-12)
    np.testing.assert_allclose(computed, sklearn_scores(model, LINEAR_PROBES), rtol=0, atol=1e-9)
