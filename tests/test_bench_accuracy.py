"""bench/accuracy.py: both families on the same grouped folds of the tiny fixture, and McNemar's test."""

from pathlib import Path

import numpy as np
import pytest

from bench import accuracy
from tests.helpers import write_tsv
from tests.test_build_model import noisy_rows


def test_mcnemar_counts_only_the_texts_one_model_got_right() -> None:
    first = np.array([True, True, False, False, True, True, True, True, True, True])
    second = np.array([True, False, True, False, False, False, False, False, False, False])
    p, only_first, only_second = accuracy.mcnemar_p(first, second)
    assert (only_first, only_second) == (7, 1)
    assert p == pytest.approx(0.0703125)  # 2 * P(X <= 1) for X ~ Binomial(8, 1/2) = 2 * 9 / 256
    assert accuracy.mcnemar_p(first, first) == (1.0, 0, 0)


def test_prints_both_pairs_side_by_side_on_the_same_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tsv(tmp_path / "train.tsv", noisy_rows(100))
    assert accuracy.main(["--data", str(data), "--folds", "2"]) == 0
    out = capsys.readouterr().out
    for task, (naive_bayes, linear) in accuracy.PAIRS.items():
        assert f"{task}: 2 grouped folds" in out
        assert f"paired, {linear} - {naive_bayes}: accuracy" in out and "McNemar p = " in out
        rows = [line.split() for line in out.splitlines() if line.strip().startswith((f"{naive_bayes} ", f"{linear} "))]
        assert len(rows) >= 2 and all(len(row) == 9 for row in rows), rows  # name, then mean and (sd) of 4 metrics


def test_missing_data_is_skipped_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert accuracy.main(["--data", str(tmp_path / "nowhere.tsv")]) == 0
    assert "skipped: Kaggle train.tsv not found" in capsys.readouterr().err
