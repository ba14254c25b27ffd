"""The build command on the tiny fixture: artifacts, report, determinism and errors."""

import json
from pathlib import Path

import pytest

import build_model
import util
from model import ARTIFACT_FILES, NLPModel


def test_build_writes_every_artifact(tiny_models: Path) -> None:
    for name in build_model.MODEL_SPECS:
        folder = tiny_models / name
        for filename in ("manifest.json", "metrics.json", *ARTIFACT_FILES, "confusion.png"):
            assert (folder / filename).is_file(), f"{name}/{filename}"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["labels"] == list(build_model.MODEL_SPECS[name].labels)
        assert manifest["data"]["rows"] > 0 and len(manifest["data"]["sha256"]) == 64
        metrics = manifest["metrics"]
        assert metrics == json.loads((folder / "metrics.json").read_text())
        for level in ("phrases", "sentences"):
            assert {"n", "accuracy", "macro_f1", "confusion_matrix"} <= metrics[level].keys()
        assert NLPModel.load(folder).version == manifest["version"]
    assert not list(tiny_models.glob(".*")), "staging folders must not be left behind"


def test_validation_never_splits_a_sentence(tiny_tsv: Path) -> None:
    train, validation = build_model.split_by_sentence(util.load_phrases(tiny_tsv))
    assert not set(train["SentenceId"]) & set(validation["SentenceId"])
    assert len(validation) > 0


def test_build_is_deterministic(tiny_tsv: Path, tiny_models: Path, tmp_path: Path) -> None:
    assert build_model.main(["--data", str(tiny_tsv), "--out", str(tmp_path)]) == 0
    for name in build_model.MODEL_SPECS:
        first = json.loads((tiny_models / name / "manifest.json").read_text())
        second = json.loads((tmp_path / name / "manifest.json").read_text())
        assert first["version"] == second["version"]
        for path in sorted((tiny_models / name).iterdir()):
            assert path.read_bytes() == (tmp_path / name / path.name).read_bytes(), f"{name}/{path.name} differs"


def test_rebuild_replaces_models_in_place(tiny_tsv: Path, tmp_path: Path) -> None:
    for _ in range(2):
        assert build_model.main(["--data", str(tiny_tsv), "--out", str(tmp_path), "--models", "sentiment"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment"]


def test_summary_is_printed(tiny_tsv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_model.main(["--data", str(tiny_tsv), "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert "sentence acc" in out.out and "sentiment" in out.out and "ratings" in out.out
    assert "done in" in out.err


def test_tune_ranks_the_grid(tiny_tsv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = {"train_ratings": [(0, 4), (0, 1, 3, 4)], "vectorizer": {"ngram_range": [(1, 1)]}, "classifier": {"alpha": [0.5, 1.0]}}
    monkeypatch.setitem(build_model.TUNING_GRID, "sentiment", grid)
    ranked = build_model.tune("sentiment", util.load_phrases(tiny_tsv), folds=2)
    assert len(ranked) == 4
    assert [row[0] for row in ranked] == sorted((row[0] for row in ranked), reverse=True)


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
