"""The flat prediction table the client and the scorer share."""

import numpy as np
import pandas as pd
import pytest

from client import columns, is_text, predictions_frame, probability_column, text_mask


@pytest.mark.parametrize("value", ["good", " a ", "None", "NA", "0"])
def test_text_is_any_string_with_something_besides_whitespace(value: object) -> None:
    assert is_text(value)


@pytest.mark.parametrize("value", [None, np.nan, pd.NA, "", "   ", "\t\n\u2003", 42, 4.2, b"bytes", ["a"]])
def test_blank_and_non_text_values_are_not_text(value: object) -> None:
    assert not is_text(value)


def test_probability_columns_are_identifiers() -> None:
    assert probability_column("Negative") == "p_Negative"
    assert probability_column("somewhat negative") == "p_somewhat_negative"
    assert columns(["a b", "c"], "rating") == [
        "prediction", "rating", "confidence", "p_a_b", "p_c", "known_terms", "terms", "model_version"
    ]  # fmt: skip


def test_rows_that_were_not_scored_are_missing_in_every_column() -> None:
    texts = pd.Series(["good", None, "bad", ""], index=[7, 3, 5, 1])
    scored = text_mask(texts)
    frame = predictions_frame(
        texts.index,
        scored,
        ["neg", "pos"],
        "rating",
        np.array([1, 0]),
        np.array([[0.2, 0.8], [0.9, 0.1]]),
        np.array([[1, 1], [0, 2]]),
        ["v1", "v1"],
    )
    assert list(frame.index) == [7, 3, 5, 1]
    assert list(frame.columns) == columns(["neg", "pos"], "rating")
    assert frame.loc[7].tolist() == ["pos", 1, 0.8, 0.2, 0.8, 1, 1, "v1"]
    assert frame.loc[5].tolist() == ["neg", 0, 0.9, 0.9, 0.1, 0, 2, "v1"]
    assert frame.loc[[3, 1]].isna().all().all()
    assert str(frame["rating"].dtype) == "Int64" and str(frame["known_terms"].dtype) == "Int64"
    assert frame["confidence"].dtype == np.float64
