"""The build command on the tiny fixture: artifacts, report, determinism and errors."""

import json
import random
from pathlib import Path

import pytest

import build_model
import util
from lib import evaluation, specs
from model import ARTIFACT_FILES, TEMPERATURE_FILE, NLPModel
from tests.helpers import write_tsv


def test_build_writes_every_artifact(tiny_models: Path) -> None:
    for name in specs.MODEL_SPECS:
        folder = tiny_models / name
        for filename in ("manifest.json", "metrics.json", *ARTIFACT_FILES, "confusion.png", "reliability.png"):
            assert (folder / filename).is_file(), f"{name}/{filename}"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["labels"] == list(specs.MODEL_SPECS[name].labels)
        assert manifest["data"]["rows"] > 0 and len(manifest["data"]["sha256"]) == 64
        metrics = manifest["metrics"]
        assert metrics == json.loads((folder / "metrics.json").read_text())
        for level in ("phrases", "sentences"):
            assert {"n", "accuracy", "macro_f1", "brier", "ece", "confusion_matrix"} <= metrics[level].keys()
            assert metrics["uncalibrated"][level].keys() == {"accuracy", "macro_f1", "brier", "ece"}
        assert NLPModel.load(folder).version == manifest["version"]
    assert not list(tiny_models.glob(".*")), "staging folders must not be left behind"


def test_validation_never_splits_a_sentence(tiny_tsv: Path) -> None:
    train, validation = specs.split_by_sentence(util.load_phrases(tiny_tsv))
    assert not set(train["SentenceId"]) & set(validation["SentenceId"])
    assert len(validation) > 0


def test_build_prints_a_summary_and_is_deterministic(
    tiny_tsv: Path, tiny_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second build of the same data (one build for both checks: each costs a fit of every model)."""
    assert build_model.main(["--data", str(tiny_tsv), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "sentence acc" in out.out and "sentiment" in out.out and "ratings" in out.out
    assert "done in" in out.err
    for name in specs.MODEL_SPECS:
        first = json.loads((tiny_models / name / "manifest.json").read_text())
        second = json.loads((tmp_path / name / "manifest.json").read_text())
        assert first["version"] == second["version"]
        for path in sorted((tiny_models / name).iterdir()):
            assert path.read_bytes() == (tmp_path / name / path.name).read_bytes(), f"{name}/{path.name} differs"


def test_rebuild_replaces_models_in_place(tiny_tsv: Path, tmp_path: Path) -> None:
    for _ in range(2):
        assert build_model.main(["--data", str(tiny_tsv), "--out", str(tmp_path), "--models", "sentiment"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment"]


def test_tune_ranks_the_grid(tiny_tsv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = {"train_ratings": [(0, 4), (0, 1, 3, 4)], "vectorizer": {"ngram_range": [(1, 1)]}, "classifier": {"alpha": [0.5, 1.0]}}
    monkeypatch.setitem(specs.TUNING_GRID, "sentiment", grid)
    ranked = build_model.tune("sentiment", util.load_phrases(tiny_tsv), folds=2)
    assert len(ranked) == 4
    assert [row[0] for row in ranked] == sorted((row[0] for row in ranked), reverse=True)


def test_tune_ranks_feature_blocks_of_the_linear_family(tiny_tsv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    words_only, both = (specs.WORDS,), (specs.WORDS, {**specs.CHARACTERS, "max_features": 500})
    grid = {"train_ratings": [(0, 1, 3, 4)], "blocks": [words_only, both], "classifier": {"alpha": [1e-4, 1e-3]}}
    monkeypatch.setitem(specs.TUNING_GRID, "sentiment-logreg", grid)
    ranked = build_model.tune("sentiment-logreg", util.load_phrases(tiny_tsv), folds=2)
    assert len(ranked) == 4 and [row[0] for row in ranked] == sorted((row[0] for row in ranked), reverse=True)
    assert {row[2]["blocks"] for row in ranked} == {"word 1-2 <= None", "word 1-2 <= None + char_wb 2-5 <= 500"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file. Download train.tsv of Kaggle's 'Sentiment Analysis on Movie Reviews'"),
        ("PhraseId\tSentenceId\tPhrase\n1\t1\tx\n", "missing column Sentiment"),
        ("PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\tx\t2\n2\t1\ty\t9\n", "bad label 9 in column Sentiment on line 3"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    data = tmp_path / "train.tsv"
    if content is not None:
        data.write_text(content)
    assert build_model.main(["--data", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(data) in err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if "error" in line
    ]


def test_too_few_sentences_leave_a_model_uncalibrated_and_say_why(tiny_models: Path) -> None:
    """The tiny file holds out two or three sentences to calibrate on: not enough of each class."""
    for name, spec in specs.MODEL_SPECS.items():
        manifest = json.loads((tiny_models / name / "manifest.json").read_text())
        reason = "too few sentences" if spec.calibrate else "did not lower"
        assert manifest["calibration"]["method"] is None and reason in manifest["calibration"]["reason"]
        assert TEMPERATURE_FILE not in manifest["files"] and NLPModel.load(tiny_models / name).inverse_temperature_ is None


WORDS = {
    0: ["awful", "dull", "boring", "lifeless"],
    1: ["weak", "tired", "flat", "thin"],
    2: ["town", "family", "story", "cast"],
    3: ["nice", "pleasant", "warm", "charming"],
    4: ["brilliant", "wonderful", "moving", "best"],
}


def noisy_rows(sentences: int = 500) -> list[tuple[int, int, str, int]]:
    """Kaggle-shaped rows of many short sentences whose words only lean towards their rating."""
    generator = random.Random(0)
    rows: list[tuple[int, int, str, int]] = []
    for sentence_id in range(1, sentences + 1):
        rating = sentence_id % 5
        words = [generator.choice(WORDS[rating]), generator.choice(WORDS[generator.randrange(5)]), "film"]
        generator.shuffle(words)
        for phrase, label in ((" ".join(words), rating), (" ".join(words[:2]), rating), (words[2], 2)):
            rows.append((len(rows) + 1, sentence_id, phrase, label))
    return rows


def test_calibration_is_fitted_without_validation_sentences_and_served(tmp_path: Path) -> None:
    data = write_tsv(tmp_path / "train.tsv", noisy_rows())
    assert build_model.main(["--data", str(data), "--out", str(tmp_path / "out")]) == 0
    calibrated = [name for name, spec in specs.MODEL_SPECS.items() if spec.calibrate]
    assert {"sentiment", "ratings", "ratings-logreg"} <= set(calibrated)
    for name in calibrated:
        folder = tmp_path / "out" / name
        manifest = json.loads((folder / "manifest.json").read_text())
        metrics = manifest["metrics"]
        assert metrics["calibration"]["method"] == manifest["calibration"]["method"] == "temperature"
        assert "of the training sentences, held out from a sibling fit" in metrics["calibration"]["fitted_on"]
        assert manifest["calibration"]["fitted_on"].endswith(build_model.SERVED_CALIBRATION_SOURCE)
        for level in ("phrases", "sentences"):  # temperature scaling never changes a label
            assert metrics[level]["accuracy"] == metrics["uncalibrated"][level]["accuracy"]
            assert metrics[level]["macro_f1"] == metrics["uncalibrated"][level]["macro_f1"]
        model = NLPModel.load(folder)
        assert TEMPERATURE_FILE in manifest["files"]
        assert model.inverse_temperature_ == manifest["calibration"]["inverse_temperature"]


def test_calibration_sentences_never_overlap_validation(tiny_tsv: Path) -> None:
    train, validation = specs.split_by_sentence(util.load_phrases(tiny_tsv))
    fitting, held_out = specs.split_by_sentence(train, specs.CALIBRATION_SHARE)
    assert not set(held_out["SentenceId"]) & set(validation["SentenceId"])
    assert not set(held_out["SentenceId"]) & set(fitting["SentenceId"])
    assert len(fitting) + len(held_out) == len(train)


def test_compare_calibration_scores_every_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluation, "BOOTSTRAP_ROUNDS", 50)
    data = write_tsv(tmp_path / "train.tsv", noisy_rows())
    assert build_model.main(["--data", str(data), "--compare-calibration", "--models", "ratings"]) == 0
    out = capsys.readouterr().out
    for method in build_model.CALIBRATION_METHODS:
        assert f"  {method:<12} sentences" in out and f"  {method:<12} phrases" in out
