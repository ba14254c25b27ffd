"""score.py: in-process scoring of a DataFrame and of TSV/CSV files, CSV and Kaggle output, the progress bar."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import score
from client import columns, probability_column
from tests.doc_pages import block
from tests.helpers import COMMITTED_MODELS, KAGGLE_TEST, needs_kaggle_test
from tests.support.harness import ROOT

KAGGLE_LAYOUT = [
    "PhraseId\tSentenceId\tPhrase",
    "101\t1\tA gorgeous , witty and moving film .",
    "102\t1\t ",
    "103\t2\tNone",
    "104\t2\tthat movie was boring",
    "105\t3\t",
    "106\t3\tNA",
    '107\t4\ta "so-called" comedy',
]


@pytest.fixture
def test_tsv(tmp_path: Path) -> Path:
    """A Kaggle-layout test file with a blank phrase, an empty one, and phrases pandas would read as NaN."""
    path = tmp_path / "test.tsv"
    path.write_text("\n".join(KAGGLE_LAYOUT) + "\n", encoding="utf-8")
    return path


def expected_probabilities(model: str, text: str) -> list[float]:
    """What the served model itself says about one text, rounded as answers are."""
    served = score.served_models(COMMITTED_MODELS.resolve())[model]
    return served.model.score_one(text)[0].round(3).tolist()


def test_score_texts_keeps_the_index_and_marks_non_text_rows_missing() -> None:
    texts = pd.Series(["that movie was boring", None, np.nan, "", "  ", 42, "A gorgeous film"], index=list("abcdefg"))
    scores = score.score_texts(texts)
    assert list(scores.index) == list("abcdefg")
    assert list(scores.columns) == columns(["Negative", "Positive"], None)
    assert scores.loc[list("bcdef")].isna().all().all()
    assert scores.loc[["a", "g"], "prediction"].tolist() == ["Negative", "Positive"]
    assert scores.loc["a", ["p_Negative", "p_Positive"]].tolist() == expected_probabilities("sentiment", "that movie was boring")
    assert scores.loc["a", "confidence"] == scores.loc["a", "p_Negative"]
    assert scores.loc["a", "terms"] >= scores.loc["a", "known_terms"] > 0
    assert scores.loc["a", "model_version"].startswith("sentiment-")


def test_score_frame_appends_the_ratings_columns() -> None:
    frame = pd.DataFrame({"id": [5, 6], "review": ["wonderful , brilliant", "dull and awful"]}, index=[40, 41])
    scored = score.score_frame(frame, "review", model="ratings")
    labels = score.served_models(COMMITTED_MODELS.resolve())["ratings"].labels
    assert list(scored.columns) == ["id", "review", *columns(labels, "rating")]
    assert list(scored.index) == [40, 41]
    assert scored["rating"].tolist() == [4, 0]


@pytest.mark.parametrize("name", ["sentiment-logreg", "ratings-logreg"])
def test_the_linear_models_score_by_name(name: str) -> None:
    texts = pd.Series(["that movie was boring", "A gorgeous , witty and moving film ."])
    scores = score.score_texts(texts, model=name)
    served = score.served_models(COMMITTED_MODELS.resolve())[name]
    assert list(scores.columns) == columns(served.labels, served.index_field)
    assert (scores["model_version"] == served.model.version).all() and served.model.version.startswith(f"{name}-")
    for text, (_, row) in zip(texts, scores.iterrows(), strict=True):
        assert row[[probability_column(label) for label in served.labels]].tolist() == expected_probabilities(name, text)
    negative, positive = (served.labels.index(label) for label in scores["prediction"])
    assert negative < (len(served.labels) - 1) / 2 < positive  # a label below the middle one, then one above it


def test_kaggle_submission_from_the_linear_five_class_model(test_tsv: Path, tmp_path: Path) -> None:
    out = tmp_path / "submission.csv"
    assert score.main([str(test_tsv), "--kaggle", "--model", "ratings-logreg", "--out", str(out), "--quiet"]) == 0
    written = pd.read_csv(out)
    assert written["PhraseId"].tolist() == [101, 102, 103, 104, 105, 106, 107]
    assert written["Sentiment"].between(0, 4).all()


def test_kaggle_submission_refuses_a_model_without_ratings(test_tsv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert score.main([str(test_tsv), "--kaggle", "--model", "sentiment-logreg", "--quiet"]) == 2
    assert "--kaggle needs a model answering a 'rating'; 'sentiment-logreg' does not." in capsys.readouterr().err


def test_no_text_at_all_still_gives_the_columns() -> None:
    scores = score.score_texts(pd.Series([None, ""], dtype=object))
    assert len(scores) == 2 and scores.isna().all().all()


def test_unknown_model_is_named() -> None:
    with pytest.raises(
        score.ScoreError, match=r"No model 'reviews' in .*; it holds ratings, ratings-logreg, sentiment, sentiment-logreg\."
    ):
        score.score_texts(pd.Series(["good"]), model="reviews")


def test_tsv_phrases_are_read_verbatim(test_tsv: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    assert score.main([str(test_tsv), "--out", str(out)]) == 0
    written = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert written["PhraseId"].tolist() == ["101", "102", "103", "104", "105", "106", "107"]
    assert written["Phrase"].tolist()[2:] == ["None", "that movie was boring", "", "NA", 'a "so-called" comedy']
    assert (written.loc[[1, 4], "prediction"] == "").all()  # blank and empty phrases: missing, the rest scored
    assert (written.loc[[0, 2, 3, 5, 6], "prediction"] != "").all()
    assert written.loc[3, "prediction"] == "Negative"


def test_csv_with_quoted_commas_and_the_text_column_named(tmp_path: Path, capsysbinary: pytest.CaptureFixture) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('review,stars\n"Funny, warm and wonderful",5\n"",1\n', encoding="utf-8")
    assert score.main([str(path), "--text", "review", "--model", "ratings"]) == 0
    written = pd.read_csv(io.BytesIO(capsysbinary.readouterr().out))
    assert written["review"].tolist()[0] == "Funny, warm and wonderful"
    assert written["rating"].iloc[0] >= 3 and np.isnan(written["rating"].iloc[1])


def test_separator_from_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "reviews.txt"
    path.write_text("text|n\nthat movie was boring|1\n", encoding="utf-8")
    assert score.main([str(path), "--text", "text"]) == 2
    assert "--sep" in capsys.readouterr().err
    assert score.main([str(path), "--text", "text", "--sep", "|"]) == 0
    assert "Negative" in capsys.readouterr().out


def test_kaggle_submission_has_every_phrase_id(test_tsv: Path, tmp_path: Path) -> None:
    out = tmp_path / "submission.csv"
    assert score.main([str(test_tsv), "--kaggle", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "PhraseId,Sentiment"
    submission = pd.read_csv(out)
    assert submission["PhraseId"].tolist() == [101, 102, 103, 104, 105, 106, 107]
    assert submission["Sentiment"].between(0, 4).all()
    assert submission.set_index("PhraseId").loc[[102, 105], "Sentiment"].tolist() == [score.KAGGLE_BLANK_RATING] * 2
    ratings = score.score_texts(pd.Series(["that movie was boring"]), model="ratings")
    assert submission.set_index("PhraseId").loc[104, "Sentiment"] == ratings.loc[0, "rating"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "review"], "no column review (found PhraseId, SentenceId, Phrase)"),
        (["--kaggle", "--id", "Id"], "no column Id"),
    ],
)
def test_missing_columns_are_named(test_tsv: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    assert score.main([str(test_tsv), *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert score.main([str(tmp_path / "absent.tsv")]) == 2
    assert "absent.tsv: cannot read it" in capsys.readouterr().err


def test_progress_bar_is_off_when_stderr_is_not_a_terminal(test_tsv: Path, capsys: pytest.CaptureFixture) -> None:
    assert score.main([str(test_tsv)]) == 0
    assert capsys.readouterr().err == ""


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as a person's shell is."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("quiet", "shown"), [([], True), (["--quiet"], False)])
def test_progress_bar_on_a_terminal_unless_quiet(
    test_tsv: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, quiet: list[str], shown: bool
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert score.main([str(test_tsv), *quiet]) == 0
    assert ("7/7" in terminal.getvalue()) is shown


def run_saved_script(code: str, folder: Path, **environ: str) -> None:
    """Save a page's block as a script in ``folder`` and run it there with this Python, as a user runs it from the
    repository (``PYTHONPATH`` names it): the Kaggle test.tsv is where the block reads it, lib/data/ under ``folder``."""
    (folder / "lib" / "data").mkdir(parents=True)
    (folder / "lib" / "data" / "test.tsv").symlink_to(KAGGLE_TEST.resolve())
    (folder / "job.py").write_text(code, encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **environ}
    done = subprocess.run([sys.executable, "job.py"], cwd=folder, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.e2e  # about 30 s on 2 cores: a cluster's start and 66,292 phrases scored twice
@needs_kaggle_test
def test_dask_block_saved_as_a_script_scores_kaggle_test_as_one_process_does(tmp_path: Path) -> None:
    """The client page's Dask block, saved as a script and run with python: the one-process output, line for line."""
    pytest.importorskip("dask.dataframe", reason="dask is not installed: make test-e2e installs it (requirements-e2e.txt)")
    pytest.importorskip("distributed", reason="distributed is not installed: make test-e2e installs it (requirements-e2e.txt)")
    run_saved_script(block("map_partitions").code, tmp_path)
    parts = sorted(tmp_path.glob("scored-*.csv"), key=lambda path: int(path.stem.removeprefix("scored-")))
    assert len(parts) > 2  # several partitions, spread over both workers
    distributed_lines = [line for number, part in enumerate(parts) for line in part.read_text().splitlines()[(number > 0) :]]
    assert score.main([str(KAGGLE_TEST), "--model", "ratings", "--out", str(tmp_path / "single.csv")]) == 0
    single_lines = (tmp_path / "single.csv").read_text().splitlines()
    assert len(single_lines) == 66_293
    assert distributed_lines == single_lines


@pytest.mark.e2e  # two Spark sessions (a JVM each) and 66,292 phrases scored twice
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")  # pyspark's toPandas, under pandas 3
@needs_kaggle_test
@pytest.mark.skipif(shutil.which("java") is None, reason="no java for Spark (apt-get install openjdk-17-jre-headless)")
def test_spark_block_saved_as_a_script_scores_kaggle_test_as_one_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client page's Spark block, saved as a script and started as the page says: mapInPandas writes the
    one-process output, read back with Spark, row for row."""
    pytest.importorskip("pyspark", reason="pyspark is not installed: make test-e2e installs it (requirements-e2e.txt)")
    from pyspark.sql import SparkSession

    quiet = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_SUBMIT_ARGS": "--conf spark.ui.enabled=false pyspark-shell"}
    run_saved_script(block("mapInPandas").code, tmp_path, PYSPARK_PYTHON=sys.executable, **quiet)
    single = score.score_frame(pd.read_csv(KAGGLE_TEST, **score.read_options(KAGGLE_TEST)), model="ratings")
    for name, value in quiet.items():
        monkeypatch.setenv(name, value)
    spark = SparkSession.builder.master("local[1]").getOrCreate()
    try:
        schema = spark.createDataFrame(single.head(5)).schema
        scored = pd.DataFrame(spark.read.csv(str(tmp_path / "scored"), header=True, schema=schema).toPandas())
    finally:
        spark.stop()
    scored = scored.sort_values("PhraseId", kind="stable", key=lambda ids: ids.astype("int64")).reset_index(drop=True)
    # Spark's CSV writer trims each value, as the page says: PhraseId 157451, a single space, reads back empty.
    single["Phrase"] = single["Phrase"].where(single["Phrase"].str.strip() != "")
    # Spark hands integer columns with gaps back as floats; the values must be the same, row for row.
    pd.testing.assert_frame_equal(scored.astype(single.dtypes), single)
