"""score.py: in-process scoring of a DataFrame and of TSV/CSV files, CSV and Kaggle output, the progress bar."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import score
from lib.frames import columns
from tests.helpers import COMMITTED_MODELS, KAGGLE_TEST, needs_kaggle_test

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
    return served.model.predict_one(text).round(3).tolist()


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


def test_no_text_at_all_still_gives_the_columns() -> None:
    scores = score.score_texts(pd.Series([None, ""], dtype=object))
    assert len(scores) == 2 and scores.isna().all().all()


def test_unknown_model_is_named() -> None:
    with pytest.raises(score.ScoreError, match=r"No model 'reviews' in .*; it holds ratings, sentiment\."):
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


@pytest.mark.e2e  # about 17 s on 2 cores: a cluster's start and 66,292 phrases scored twice
@needs_kaggle_test
def test_dask_cluster_scores_kaggle_test_as_one_process_does(tmp_path: Path) -> None:
    """Two worker processes, each loading the models once, give the single-process output row for row."""
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    single = score.score_frame(pd.read_csv(KAGGLE_TEST, **score.read_options(KAGGLE_TEST)), model="ratings")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        phrases = dd.read_csv(KAGGLE_TEST, blocksize="1MB", **score.read_options(KAGGLE_TEST))
        assert phrases.npartitions > 2
        scored = phrases.map_partitions(score.score_frame, model="ratings").compute()
    # Dask keeps strings in its own string dtype (<NA> for missing); the values must be the same, row for row.
    pd.testing.assert_frame_equal(scored.reset_index(drop=True).astype(single.dtypes), single)
    assert len(single) == 66_292 and single["prediction"].isna().sum() == 1
