"""Reading and validating the Kaggle TSV, sentence selection, plots."""

from pathlib import Path

import numpy as np
import pytest

import util
from tests.helpers import tiny_rows, write_tsv


def test_load_phrases_reads_kaggle_layout(tiny_tsv: Path) -> None:
    frame = util.load_phrases(tiny_tsv)
    assert list(frame.columns) == list(util.REQUIRED_COLUMNS)
    assert len(frame) == len(tiny_rows())
    assert frame["Sentiment"].dtype == np.int64


def test_load_phrases_keeps_words_pandas_would_read_as_missing(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "t.tsv", [(1, 1, "null", 2), (2, 1, "NA", 2), (3, 2, '" quoted', 3)])
    assert util.load_phrases(path)["Phrase"].tolist() == ["null", "NA", '" quoted']


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(util.DataError, match=r"nope\.tsv: no such file"):
        util.load_phrases(tmp_path / "nope.tsv")


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "t.tsv", [(1, 1, "x")], header="PhraseId\tSentenceId\tPhrase")
    with pytest.raises(util.DataError, match="missing column Sentiment"):
        util.load_phrases(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((2, 1, "good", 7), "bad label 7 in column Sentiment on line 3"),
        ((2, 1, "good", "high"), "bad value 'high' in column Sentiment on line 3"),
        ((2, "one", "good", 1), "bad value 'one' in column SentenceId on line 3"),
    ],
)
def test_bad_row_names_line_and_column(tmp_path: Path, row: tuple, message: str) -> None:
    path = write_tsv(tmp_path / "t.tsv", [(1, 1, "fine", 2), row])
    with pytest.raises(util.DataError, match=message):
        util.load_phrases(path)


def test_header_only_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(util.DataError, match="no rows"):
        util.load_phrases(write_tsv(tmp_path / "t.tsv", []))


def test_whole_sentences_picks_longest_phrase_per_sentence(tiny_tsv: Path) -> None:
    frame = util.load_phrases(tiny_tsv)
    sentences = util.whole_sentences(frame)
    assert sentences["SentenceId"].is_unique
    assert sentences["SentenceId"].nunique() == frame["SentenceId"].nunique()
    first = sentences[sentences["SentenceId"] == 1].iloc[0]
    assert first["Phrase"] == "a dull , boring and lifeless mess"


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert util.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_plots_write_png_files(tmp_path: Path) -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    probabilities = np.eye(3)[y] * 0.7 + 0.1
    util.plot_confusion(np.array([[2, 0, 0], [0, 2, 0], [0, 0, 2]]), ["a", "b", "c"], tmp_path / "c.png", "t")
    util.plot_roc(y, probabilities, ["a", "b", "c"], tmp_path / "r3.png", "t")
    util.plot_roc(y % 2, probabilities[:, :2], ["a", "b"], tmp_path / "r2.png", "t")
    for name in ("c.png", "r3.png", "r2.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_reliability_diagram_is_a_png(tmp_path: Path) -> None:
    y = np.array([1, 0, 1, 1, 0])
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.45, 0.55]])
    curves = {"uncalibrated": probabilities, "calibrated": (probabilities + 0.5) / 2}
    util.plot_reliability(y, curves, 15, tmp_path / "reliability.png", "t")
    assert (tmp_path / "reliability.png").read_bytes().startswith(b"\x89PNG")
