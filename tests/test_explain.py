"""Explanations: NLPModel.explain is exact and places terms in the original text; explain=true on every prediction route."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from app import create_app
from lib.settings import MAX_EXPLAIN_TERMS, ConfigError, Settings
from model import NLPModel
from tests.helpers import COMMITTED_MODELS, KAGGLE_TEST

PHRASES_PER_SOURCE = 3000
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def committed() -> dict[str, NLPModel]:
    """The committed models, loaded once for this module."""
    return {name: NLPModel.load(COMMITTED_MODELS / name) for name in ("sentiment", "ratings")}


def explained_sum(explanation: dict[str, Any]) -> float:
    """The prior difference plus every contribution, listed or omitted: what must equal the log-odds."""
    listed = math.fsum(term["contribution"] for term in explanation["terms"])
    return explanation["prior_difference"] + listed + explanation["terms_omitted"]["contribution"]


def fitted(texts: list[str], labels: list[int], **vectorizer_params: Any) -> NLPModel:
    model = NLPModel(("Negative", "Positive"), {"ngram_range": (1, 2), "sublinear_tf": True, **vectorizer_params})
    model.vectorizer_fit(texts)
    return model.train(model.vectorizer_transform(texts), labels)


TRAIN = [
    "İstanbul is wonderful",
    "a wonderful film",
    "not a bad film",
    "a bad film",
    "awful and boring",
    "İstanbul traffic is awful",
    "the café was a ﬁne place",
    "boring film",
]
TRAIN_LABELS = [1, 1, 1, 0, 0, 0, 1, 0]


def generated_phrases(model: NLPModel, count: int, seed: int) -> list[str]:
    """Phrases of the model's own words mixed with unknown words, one-letter words, punctuation and odd casing."""
    rng = np.random.default_rng(seed)
    words = sorted({word for term in model.vectorizers[0].vocabulary_ for word in term.split()})
    extras = ["a", "I", "zzqx", "İstanbul", "STRASSE", "Straße", "ﬁlm", "café", "ΟΔΟΣ", ",", "!", "--", "😀", "n't", "'s"]
    phrases = []
    for _ in range(count):
        length = int(rng.integers(1, 25))
        chosen = [words[i] if rng.random() < 0.8 else extras[i % len(extras)] for i in rng.integers(0, len(words), length)]
        phrases.append(" ".join(word.upper() if rng.random() < 0.1 else word for word in chosen))
    return phrases


def kaggle_phrases(count: int) -> list[str]:
    """Every so many phrase of the Kaggle test file, when it is there."""
    if not KAGGLE_TEST.is_file():
        pytest.skip(f"Kaggle test.tsv not found at {KAGGLE_TEST}: put it in lib/data/ (see the README) or set KAGGLE_TEST")
    with KAGGLE_TEST.open(encoding="utf-8", newline="") as handle:
        phrases = [row["Phrase"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row["Phrase"]]
    return phrases[:: max(1, len(phrases) // count)][:count]


def assert_exact(model: NLPModel, phrases: list[str]) -> None:
    """Per phrase: contributions and prior add up to scikit-learn's joint log-likelihood difference, for the class it picks."""
    joint = model.clf.predict_joint_log_proba(model.vectorizer_transform(phrases))
    for phrase, row in zip(phrases, joint, strict=True):
        explanation = model.explain(phrase, top=MAX_EXPLAIN_TERMS)
        best, runner_up = explanation["predicted"], explanation["runner_up"]
        assert row[best] == row.max() and best != runner_up, phrase
        assert row[runner_up] == np.delete(row, best).max(), phrase
        assert abs(explanation["log_odds"] - (row[best] - row[runner_up])) < TOLERANCE, phrase
        assert abs(explained_sum(explanation) - (row[best] - row[runner_up])) < TOLERANCE, phrase


def assert_terms_and_spans(model: NLPModel, phrases: list[str]) -> None:
    """The explainer makes the vectorizer's very terms, and each span of the original text analyzes to its term."""
    analyze = model.vectorizer.build_analyzer()
    explainer = model._explanation_path()
    for phrase in phrases:
        located = explainer.terms_with_spans(phrase)
        assert [term for term, _ in located] == analyze(phrase), phrase
        for term, (start, end) in located:
            assert 0 <= start < end <= len(phrase), (phrase, term)
            assert term in analyze(phrase[start:end]), (phrase, term, phrase[start:end])


@pytest.mark.parametrize("name", ["sentiment", "ratings"])
def test_committed_models_explain_exactly_on_generated_phrases(committed: dict[str, NLPModel], name: str) -> None:
    model = committed[name]
    phrases = generated_phrases(model, PHRASES_PER_SOURCE, seed=len(name))
    assert_exact(model, phrases)
    assert_terms_and_spans(model, phrases[:500])


@pytest.mark.parametrize("name", ["sentiment", "ratings"])
def test_committed_models_explain_exactly_on_kaggle_phrases(committed: dict[str, NLPModel], name: str) -> None:
    phrases = kaggle_phrases(PHRASES_PER_SOURCE)
    model = committed[name]
    assert_exact(model, phrases)
    assert_terms_and_spans(model, phrases[:500])


@pytest.mark.parametrize(
    "params",
    [{}, {"strip_accents": "unicode"}, {"strip_accents": "ascii"}, {"stop_words": ["is", "the"]}, {"ngram_range": (2, 3)}],
    ids=["plain", "unicode-accents", "ascii-accents", "stop-words", "bigrams-and-trigrams"],
)
def test_explanations_are_exact_whatever_the_analyzer_settings(params: dict[str, Any]) -> None:
    model = fitted(TRAIN, TRAIN_LABELS, **params)
    phrases = [*TRAIN, *generated_phrases(model, 300, seed=1), "", "zzz"]
    assert_exact(model, phrases)
    assert_terms_and_spans(model, [phrase for phrase in phrases if phrase])


def test_spans_index_the_original_text_when_lowercasing_lengthens_it() -> None:
    """ "İ".lower() is two characters ("i" and a combining dot), so the lower-cased text is longer than the one sent."""
    model = fitted(TRAIN, TRAIN_LABELS)
    text = "İİ İstanbul: İstanbul is wonderful"
    assert len(text.lower()) == len(text) + 4
    explanation = model.explain(text, top=MAX_EXPLAIN_TERMS)
    where = {term["term"]: [text[start:end] for start, end in term["spans"]] for term in explanation["terms"]}
    assert where["stanbul"] == ["stanbul", "stanbul"]
    assert where["wonderful"] == ["wonderful"]
    assert where["is wonderful"] == ["is wonderful"]
    assert where["stanbul is"] == ["stanbul is"]
    [first, second] = next(term["spans"] for term in explanation["terms"] if term["term"] == "stanbul")
    assert first == [text.index("İstanbul") + 1, text.index("İstanbul") + 8]
    assert second == [text.rindex("İstanbul") + 1, text.rindex("İstanbul") + 8]


def test_spans_follow_accent_stripping_that_changes_lengths() -> None:
    model = fitted(TRAIN, TRAIN_LABELS, strip_accents="unicode")
    # A decomposed é (two characters become one) and the ligature "ﬁ" (one becomes two).
    text = "The cafe\u0301 was a \ufb01ne place"
    explanation = model.explain(text, top=MAX_EXPLAIN_TERMS)
    where = {term["term"]: [text[start:end] for start, end in term["spans"]] for term in explanation["terms"]}
    assert where["cafe"] == ["cafe\u0301"]
    assert where["fine"] == ["\ufb01ne"]
    assert where["fine place"] == ["\ufb01ne place"]


def test_a_word_pair_spans_the_one_letter_word_the_tokenizer_dropped() -> None:
    model = fitted(TRAIN, TRAIN_LABELS)
    text = "Not a BAD film, I think"
    explanation = model.explain(text, top=MAX_EXPLAIN_TERMS)
    where = {term["term"]: [text[start:end] for start, end in term["spans"]] for term in explanation["terms"]}
    assert where["not bad"] == ["Not a BAD"]
    assert where["bad film"] == ["BAD film"]
    assert where["bad"] == ["BAD"]
    unknown = {term["term"]: [text[start:end] for start, end in term["spans"]] for term in explanation["unknown_terms"]}
    assert unknown["film think"] == ["film, I think"]


def test_unknown_terms_are_listed_in_text_order_and_count_for_nothing() -> None:
    model = fitted(TRAIN, TRAIN_LABELS)
    text = "zzqx wonderful qqqx zzqx"
    explanation = model.explain(text)
    assert [term["term"] for term in explanation["terms"]] == ["wonderful"]
    unknown = explanation["unknown_terms"]
    assert [term["term"] for term in unknown] == ["zzqx", "qqqx", "zzqx wonderful", "wonderful qqqx", "qqqx zzqx"]
    assert unknown[0] == {"term": "zzqx", "count": 2, "spans": [[0, 4], [20, 24]]}
    assert explanation["unknown_terms_omitted"] == 0
    nothing_known = model.explain("zzqx qqqx")
    assert nothing_known["terms"] == [] and nothing_known["log_odds"] == nothing_known["prior_difference"]


def test_terms_are_sorted_by_absolute_contribution_and_cut_at_top(committed: dict[str, NLPModel]) -> None:
    model = committed["sentiment"]
    text = "a wonderful , moving film that is never boring , though the plot is thin and the ending awful zzqx qqqx wwqx"
    whole = model.explain(text, top=MAX_EXPLAIN_TERMS)
    sizes = [abs(term["contribution"]) for term in whole["terms"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) > 5
    top = model.explain(text, top=3)
    assert top["terms"] == whole["terms"][:3]
    assert top["terms_omitted"]["count"] == len(whole["terms"]) - 3
    assert abs(explained_sum(top) - top["log_odds"]) < TOLERANCE
    assert len(top["unknown_terms"]) == 3 and top["unknown_terms_omitted"] == len(whole["unknown_terms"]) - 3


def test_a_given_label_is_explained_against_the_most_likely_other(committed: dict[str, NLPModel]) -> None:
    model = committed["ratings"]
    text = "a charming but uneven comedy"
    joint = model.clf.predict_joint_log_proba(model.vectorizer_transform([text]))[0]
    weakest = int(joint.argmin())
    explanation = model.explain(text, predicted=weakest)
    assert explanation["predicted"] == weakest and explanation["runner_up"] == int(joint.argmax())
    assert explanation["log_odds"] < 0
    assert abs(explained_sum(explanation) - (joint[weakest] - joint.max())) < TOLERANCE


def test_character_ngrams_across_words_explain_exactly_without_spans() -> None:
    model = fitted(TRAIN, TRAIN_LABELS, analyzer="char", ngram_range=(2, 3))
    assert_exact(model, ["wonderful film", "awful", "zz"])
    assert all(term["spans"] == [] for term in model.explain("wonderful film")["terms"])


@pytest.mark.parametrize("params", [{}, {"strip_accents": "unicode"}], ids=["plain", "unicode-accents"])
def test_char_wb_ngrams_are_summed_onto_their_words_exactly(params: dict[str, Any]) -> None:
    """Each char_wb n-gram lies in one whitespace-separated word: a person sees one number per word, where it is."""
    model = fitted(TRAIN, TRAIN_LABELS, analyzer="char_wb", ngram_range=(2, 4), **params)
    assert_exact(model, [*TRAIN, *generated_phrases(model, 300, seed=2), "", "zz", "İstanbul İstanbul, is wonderful"])
    assert_terms_and_spans(model, [phrase for phrase in TRAIN if phrase])
    text = "A wonderful,  WONDERFUL film\tzzqx cafe\u0301"
    explanation = model.explain(text, top=MAX_EXPLAIN_TERMS)
    where = {term["term"]: [text[start:end] for start, end in term["spans"]] for term in explanation["terms"]}
    assert where["wonderful,"] == ["wonderful,"]
    assert where["wonderful"] == ["WONDERFUL"]
    assert where["film"] == ["film"] and where["a"] == ["A"]
    assert all(term["count"] == len(term["spans"]) for term in explanation["terms"])
    if params:
        assert where["cafe"] == ["cafe\u0301"]
    assert [term["term"] for term in explanation["unknown_terms"]] == ["zzqx"]  # no n-gram of it is known


def test_per_character_preprocessing_adds_up_to_the_whole_text() -> None:
    """Span mapping preprocesses each character alone: that must line up with the whole text, for every character."""
    for params in ({}, {"strip_accents": "unicode"}, {"strip_accents": "ascii"}):
        preprocess = fitted(TRAIN, TRAIN_LABELS, **params).vectorizer.build_preprocessor()
        characters = [chr(code) for code in itertools.chain(range(0x20, 0xD800), range(0xE000, 0x10000))]
        for start in range(0, len(characters), 512):
            chunk = "".join(characters[start : start + 512])
            assert sum(len(preprocess(character)) for character in chunk) == len(preprocess(chunk)), (params, start)


# --- the API ------------------------------------------------------------------------------------


def explanations_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["explanation"] for item in answer.get("predictions", [answer])]


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("get", {"query_string": {"query": "boring awful dull", "explain": "true"}}),
        ("get", {"query_string": {"query": "boring awful dull", "explain": "1"}}),
        ("get", {"query_string": {"query": "boring awful dull", "explain": "True"}}),  # requests sends Python's True so
        ("get", {"data": {"query": "boring awful dull", "explain": "true"}}),
        ("post", {"data": {"query": "boring awful dull", "explain": "true"}}),
        ("post", {"json": {"query": "boring awful dull", "explain": True}}),
        ("post", {"query_string": {"explain": "true"}, "json": {"query": "boring awful dull"}}),
        ("post", {"json": {"queries": ["boring awful dull", "brilliant"], "explain": True}}),
        ("post", {"query_string": {"explain": "true"}, "json": {"queries": ["boring awful dull", "brilliant"]}}),
    ],
    ids=["url", "url-1", "url-True", "get-form", "form", "json", "url-with-json-query", "batch", "batch-url"],
)
def test_explain_is_read_from_the_url_a_form_or_json(client: FlaskClient, method: str, kwargs: dict[str, Any]) -> None:
    response = client.open("/", method=method.upper(), **kwargs)
    assert response.status_code == 200, response.json
    items = response.get_json().get("predictions", [response.json])
    for item in items:
        explanation = item["explanation"]
        assert explanation["predicted"] == item["prediction"]
        assert explanation["runner_up"] != item["prediction"]
        assert abs(explained_sum(explanation) - explanation["log_odds"]) < TOLERANCE
    assert items[0]["prediction"] == "Negative"
    assert [term["term"] for term in items[0]["explanation"]["terms"]][:1] != []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"query_string": {"query": "boring"}},
        {"query_string": {"query": "boring", "explain": "false"}},
        {"query_string": {"query": "boring", "explain": "0"}},
        {"json": {"query": "boring", "explain": False}},
        {"query_string": {"query": "boring", "explain_terms": "5"}},
        {"query_string": {"explain": "false"}, "json": {"queries": ["boring"], "explain": True}},
    ],
)
def test_no_explanation_unless_asked(client: FlaskClient, kwargs: dict[str, Any]) -> None:
    response = client.post("/", **kwargs)
    assert response.status_code == 200
    assert all("explanation" not in item for item in response.get_json().get("predictions", [response.json]))


def test_ratings_explain_against_the_runner_up(committed_client: FlaskClient) -> None:
    answer = committed_client.get("/ratings", query_string={"query": "That was pretty entertaining", "explain": "true"}).json
    explanation = answer["explanation"]
    ranked = sorted(answer["probabilities"], key=answer["probabilities"].__getitem__, reverse=True)
    assert [explanation["predicted"], explanation["runner_up"]] == ranked[:2]
    assert explanation["prior_difference"] == 0.0, "the ratings model has a uniform prior"
    assert math.log(answer["confidence"] / answer["probabilities"][ranked[1]]) == pytest.approx(explanation["log_odds"], abs=0.02)


def test_explained_answers_are_the_plain_answers_plus_an_explanation(committed_client: FlaskClient) -> None:
    plain = committed_client.post("/", json={"queries": ["It is not a bad film", "zzqx"]}).json
    explained = committed_client.post("/", json={"queries": ["It is not a bad film", "zzqx"], "explain": True}).json
    for before, after in zip(plain["predictions"], explained["predictions"], strict=True):
        assert {key: value for key, value in after.items() if key != "explanation"} == before
    text = "It is not a bad film"
    terms = {term["term"]: term for term in explained["predictions"][0]["explanation"]["terms"]}
    assert terms["not bad"]["spans"] == [[text.index("not"), text.index("bad") + 3]]
    assert terms["not bad"]["contribution"] < 0 < terms["bad"]["contribution"], "'not bad' pulls towards Positive"
    unknown = explained["predictions"][1]["explanation"]
    assert unknown["terms"] == [] and unknown["unknown_terms"] == [{"term": "zzqx", "count": 1, "spans": [[0, 4]]}]


def test_explain_terms_sets_how_many_terms_are_listed(committed_client: FlaskClient) -> None:
    text = "a wonderful , moving film that is never boring , though the plot is thin and the ending awful"
    default = committed_client.get("/", query_string={"query": text, "explain": "true"}).json["explanation"]
    assert len(default["terms"]) == Settings().explain_terms == 10
    two = committed_client.post("/", json={"query": text, "explain": True, "explain_terms": 2}).json["explanation"]
    assert two["terms"] == default["terms"][:2] and two["terms_omitted"]["count"] == default["terms_omitted"]["count"] + 8
    every = committed_client.get("/", query_string={"query": text, "explain": "1", "explain_terms": "100"}).json
    assert every["explanation"]["terms_omitted"]["count"] == 0
    configured = create_app({"EXPLAIN_TERMS": "3"}).test_client()
    assert len(configured.get("/", query_string={"query": text, "explain": "true"}).json["explanation"]["terms"]) == 3


@pytest.mark.parametrize("value", ["0", "101", "ten"])
def test_explain_terms_setting_is_bounded(value: str) -> None:
    with pytest.raises(ConfigError, match=f"Config 'EXPLAIN_TERMS' has value '{value}'. Not a whole number from 1 to 100."):
        Settings.from_mapping({"EXPLAIN_TERMS": value})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_string": {"query": "ok", "explain": "yes"}}, "'explain' must be true or false, got 'yes'."),
        ({"query_string": {"query": "ok", "explain": ""}}, "'explain' must be true or false, got ''."),
        ({"query_string": [("query", "ok"), ("explain", "1"), ("explain", "0")]}, "'explain' appears 2 times in the URL."),
        ({"json": {"query": "ok", "explain": 1}}, "'explain' must be true or false, got number."),
        ({"json": {"query": "ok", "explain": None}}, "'explain' must be true or false, got null."),
        ({"json": {"queries": ["ok"], "explain": "maybe"}}, "'explain' must be true or false, got 'maybe'."),
        ({"data": {"query": "ok", "explain": "on"}}, "'explain' must be true or false, got 'on'."),
        (
            {"query_string": {"query": "ok", "explain": "true", "explain_terms": "0"}},
            "'explain_terms' must be a whole number from 1 to 100, got '0'.",
        ),
        (
            {"query_string": {"query": "ok", "explain": "true", "explain_terms": "101"}},
            "'explain_terms' must be a whole number from 1 to 100, got '101'.",
        ),
        (
            {"query_string": {"query": "ok", "explain": "true", "explain_terms": "ten"}},
            "'explain_terms' must be a whole number from 1 to 100, got 'ten'.",
        ),
        (
            {"json": {"query": "ok", "explain": True, "explain_terms": 2.5}},
            "'explain_terms' must be a whole number from 1 to 100, got number.",
        ),
        (
            {"json": {"queries": ["ok"], "explain": True, "explain_terms": True}},
            "'explain_terms' must be a whole number from 1 to 100, got boolean.",
        ),
        (
            {"json": {"queries": ["ok"], "explain": True, "explain_terms": 1000}},
            "'explain_terms' must be a whole number from 1 to 100, got 1000.",
        ),
    ],
)
def test_bad_explain_values_are_400_with_a_message(client: FlaskClient, kwargs: dict[str, Any], message: str) -> None:
    for path in ("/", "/ratings"):
        response = client.post(path, **kwargs)
        assert response.status_code == 400
        assert response.json == {"message": response.json["message"]} and response.json["message"].startswith(message)


def test_explanations_match_the_document(client: FlaskClient) -> None:
    from tests.test_openapi import assert_conforms

    spec = client.get("/openapi.json").get_json()
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("get", "/", {"query_string": {"query": "a brilliant and wonderful film zzqx", "explain": "true"}}),
        ("post", "/ratings", {"json": {"queries": ["wonderful", "zzqx awful"], "explain": True, "explain_terms": 1}}),
    ]
    for method, url, kwargs in calls:
        response = client.open(url, method=method.upper(), **kwargs)
        assert response.status_code == 200 and explanations_of(response.get_json())
        assert_conforms(spec, url, method, response)
    parameters = {parameter["$ref"].rsplit("/", 1)[1] for parameter in spec["paths"]["/"]["get"]["parameters"]}
    assert {"Explain", "ExplainTerms"} <= parameters


# --- the linear family: contributions of word and character blocks add up to the logits -------------------------------

LINEAR_BLOCKS = (
    {"ngram_range": (1, 2), "sublinear_tf": True},
    {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "strip_accents": "unicode"},
)


def linear_fitted(classifier: str, labels: int, **params: Any) -> NLPModel:
    """A linear model over word and char_wb blocks on TRAIN (binary), or on TRAIN in five made-up classes."""
    y = TRAIN_LABELS if labels == 2 else [0, 1, 2, 3, 4, 0, 1, 2]
    names = ("Negative", "Positive") if labels == 2 else tuple("abcde")
    model = NLPModel(names, classifier_params=params, family="linear", blocks=LINEAR_BLOCKS, classifier=classifier)
    model.vectorizer_fit(TRAIN)
    return model.train(model.vectorizer_transform(TRAIN), y)


def scikit_learn_logits(model: NLPModel, phrases: list[str]) -> np.ndarray:
    """Each phrase's score per class from the fitted estimator's decision_function on scikit-learn's own TF-IDF."""
    margins = model.clf.estimator_.decision_function(model.vectorizer.transform(phrases))
    return np.column_stack([np.zeros_like(margins), margins]) if margins.ndim == 1 else margins


@pytest.mark.parametrize(
    ("classifier", "labels", "params"),
    [("logistic_regression", 2, {"C": 10.0}), ("logistic_regression", 5, {"C": 10.0}), ("linear_svc", 5, {}), ("sgd", 2, {})],
)
def test_linear_explanations_add_up_to_the_logits_exactly(classifier: str, labels: int, params: dict[str, Any]) -> None:
    model = linear_fitted(classifier, labels, **params)
    phrases = [*TRAIN, *generated_phrases(model, 300, seed=3), "", "zzz", "İstanbul İstanbul, cafe\u0301 \ufb01ne"]
    for phrase, row in zip(phrases, scikit_learn_logits(model, phrases), strict=True):
        explanation = model.explain(phrase, top=MAX_EXPLAIN_TERMS)
        best, runner_up = explanation["predicted"], explanation["runner_up"]
        assert row[best] == row.max() or row.max() - row[best] < TOLERANCE, phrase
        assert abs(explanation["log_odds"] - (row[best] - row[runner_up])) < TOLERANCE, phrase
        assert abs(explained_sum(explanation) - (row[best] - row[runner_up])) < TOLERANCE, phrase
        assert explanation["prior_difference"] == model.clf.intercept_[best] - model.clf.intercept_[runner_up]


def test_a_word_is_one_term_whether_its_weight_comes_from_words_or_characters() -> None:
    model = linear_fitted("logistic_regression", 2, C=10.0)
    text = "Not a BAD film, wonderful zzqx"
    explanation = model.explain(text, top=MAX_EXPLAIN_TERMS)
    terms = {term["term"]: term for term in explanation["terms"]}
    assert len(terms) == len(explanation["terms"]), "one entry per term"
    for word in ("bad", "wonderful", "a", "film,"):
        assert [text[start:end] for start, end in terms[word]["spans"]] == [text[text.lower().index(word) :][: len(word)]]
    assert [text[start:end] for start, end in terms["not bad"]["spans"]] == ["Not a BAD"]  # a word pair: the word block's
    unknown = [term["term"] for term in explanation["unknown_terms"]]
    assert len(unknown) == len(set(unknown)) and not set(unknown) & set(terms), "a word is known or unknown, once"


# --- explained through the API: a linear model's numbers are its logits, and the document says so ------------------------


def test_a_served_linear_models_explanation_adds_up_to_its_logits_and_names_words(mixed_models: Path) -> None:
    from tests.test_openapi import assert_conforms

    client = create_app({"MODELS_DIR": str(mixed_models)}).test_client()
    spec = client.get("/openapi.json").get_json()
    text = "A brilliant , wonderful film filmy qqqq"
    for path in ("/sentiment-logreg", "/ratings-logreg"):
        response = client.get(path, query_string={"query": text, "explain": "true", "explain_terms": 100})
        assert response.status_code == 200
        assert_conforms(spec, path, "get", response)
        explained = response.get_json()["explanation"]
        total = explained["prior_difference"] + sum(term["contribution"] for term in explained["terms"])
        assert math.isclose(total + explained["terms_omitted"]["contribution"], explained["log_odds"], abs_tol=1e-9)
        assert explained["terms_omitted"]["count"] == 0
        words = {term["term"]: term["spans"] for term in explained["terms"]}
        assert words["brilliant"] == [[2, 11]] and words["film"] == [[24, 28]]
        assert words["filmy"] == [[29, 34]]  # no word the model knows, but its character n-grams are: summed onto it
        assert "qqqq" in [term["term"] for term in explained["unknown_terms"]]  # nothing of it is known
        assert all(" " not in term or len(spans) == 1 for term, spans in words.items())


def test_the_document_says_what_each_familys_numbers_are(mixed_models: Path) -> None:
    schemas = create_app({"MODELS_DIR": str(mixed_models)}).test_client().get("/openapi.json").get_json()["components"]["schemas"]
    naive_bayes, linear = schemas["SentimentExplanation"], schemas["SentimentLogregExplanation"]
    assert "log P(term | predicted)" in naive_bayes["description"]
    assert "log-likelihood" in naive_bayes["properties"]["log_odds"]["description"]
    assert "log P(" not in linear["description"] and "not log-probabilities" in linear["description"]
    assert "logit" in linear["properties"]["log_odds"]["description"]
    assert "Intercept" in linear["properties"]["prior_difference"]["description"]
    assert "character n-grams" in linear["description"] and "character n-grams" not in naive_bayes["description"]
