"""lib/corpus.py: a fit from rows of every phrase's counts is the fit on those phrases' texts, to the bit."""

import numpy as np
import pandas as pd
import pytest

from lib.corpus import Corpus
from model import NLPModel

TEXTS = pd.Series(
    ["a dull , boring film", "the best film of the year", "dull dull dull", "a warm and moving story", "boring", "film"],
    index=[10, 11, 12, 13, 14, 15],
)
BLOCKS = [
    {"ngram_range": (1, 2), "sublinear_tf": True, "max_features": 7},
    {"analyzer": "char_wb", "ngram_range": (2, 4), "sublinear_tf": True, "max_features": 30},
    {"ngram_range": (1, 1), "binary": True, "min_df": 2},
]


@pytest.mark.parametrize("rows", [[10, 11, 12, 13, 14, 15], [12, 10, 14], [11, 13, 15]])
def test_a_fit_from_counted_rows_equals_a_fit_on_their_texts(rows: list[int]) -> None:
    from_texts = NLPModel(["a", "b"], family="linear", blocks=BLOCKS).vectorizer_fit(TEXTS.loc[rows])
    from_counts = NLPModel(["a", "b"], family="linear", blocks=BLOCKS)
    features = Corpus(TEXTS).fit(from_counts, pd.Index(rows))
    for counted, read in zip(from_counts.vectorizers, from_texts.vectorizers, strict=True):
        assert counted.vocabulary_ == read.vocabulary_
        np.testing.assert_array_equal(counted.idf_, read.idf_)
    expected = from_texts.vectorizer_transform(TEXTS.loc[rows])
    assert (features != expected).nnz == 0 and np.array_equal(features.indices, expected.indices)
    np.testing.assert_array_equal(features.data, expected.data)


def test_rows_outside_the_corpus_are_refused() -> None:
    with pytest.raises(ValueError, match="rows must be labels"):
        Corpus(TEXTS).fit(NLPModel(["a", "b"]), pd.Index([10, 99]))
