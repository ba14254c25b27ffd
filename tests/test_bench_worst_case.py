"""bench/worst_case.py's pure parts: the largest shape the limits allow, the costly texts, and the summary."""

from __future__ import annotations

import math

import pytest

from bench import worst_case
from bench.worst_case import Shape, contents, filled, largest_shapes, load_summary, percentile, render, split
from lib.limits import limits
from lib.settings import Settings

DEFAULTS = limits(Settings())


def test_split_adds_up_and_differs_by_at_most_one() -> None:
    for total, count in ((10, 3), (150_000, 1000), (5, 5), (20_000, 1)):
        lengths = split(total, count)
        assert sum(lengths) == total and len(lengths) == count and max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("settings", [Settings(), Settings(max_request_chars=30, max_explain_chars=7, max_batch=3)])
def test_every_shape_is_within_the_limits_and_at_their_most(settings: Settings) -> None:
    published = limits(settings)
    shapes = {shape.name: shape for shape in largest_shapes(published)}
    assert set(shapes) == {
        "single",
        "batch, longest texts",
        "batch, most texts",
        "single explain",
        "batch explain, longest texts",
        "batch explain, most texts",
    }
    for shape in shapes.values():
        assert max(shape.lengths) <= published["max_query_chars"] and len(shape.lengths) <= published["max_batch"]
        assert shape.chars <= published["max_request_chars"] and min(shape.lengths) >= 1
        if shape.explain_terms is not None:
            assert len(shape.lengths) <= published["max_explain_texts"] and shape.chars <= published["max_explain_chars"]
            assert 1 <= shape.explain_terms <= published["max_explain_terms"]
            assert len(shape.lengths) * shape.explain_terms <= published["max_explained_terms"]
    scored = min(published["max_request_chars"], published["max_batch"] * published["max_query_chars"])
    assert shapes["batch, longest texts"].chars == shapes["batch, most texts"].chars == scored
    assert len(shapes["batch, most texts"].lengths) == min(published["max_batch"], scored)
    assert shapes["single"].lengths == (min(scored, published["max_query_chars"]),) and not shapes["single"].batch


def test_the_default_shapes() -> None:
    shapes = {shape.name: shape for shape in largest_shapes(DEFAULTS)}
    assert shapes["batch, longest texts"].lengths == (18_750,) * 8  # 150,000 characters in as few texts as can be
    assert len(shapes["batch, most texts"].lengths) == 1000 and shapes["batch, most texts"].chars == 150_000
    assert shapes["single explain"] == Shape("single explain", (20_000,), 100, batch=False)
    assert len(shapes["batch explain, most texts"].lengths) == 100 and shapes["batch explain, most texts"].explain_terms == 20


def test_filled_is_exactly_as_long_as_asked_and_starts_with_the_prefix() -> None:
    for length in (1, 2, 7, 100, 20_000):
        text = filled(["ab", "cd"], length, prefix="İ")
        assert len(text) == length and text.startswith("İ"[:length]) and text.strip()
    assert filled(["ab", "cd"], 8) == "ab cd ab"
    assert filled(["good"], 9) == "good good"


def test_contents_use_the_models_shortest_words_and_two_letter_words_it_does_not_know() -> None:
    vocabulary = {"ok": 0, "no": 1, "good": 2, "ok no": 3, "film": 4}
    kinds = contents(vocabulary)
    assert set(kinds["short known words"][0]) == {"ok", "no"}
    assert not set(kinds["unknown words"][0]) & set(vocabulary) and {len(word) for word in kinds["unknown words"][0]} == {2}
    assert len(kinds["one word repeated"][0]) == 1 and kinds["dotted I, then known words"][1] == worst_case.DOTTED


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50, 99, 100)
    assert percentile([3.0], 99) == 3.0 and math.isnan(percentile([], 50))


def test_load_summary_counts_failures_and_takes_an_unanswered_probe_as_the_timeout() -> None:
    answers = [(float(ms), 200) for ms in range(1, 101)] + [(5.0, 0), (7.0, 503)]
    summary = load_summary(answers, [(180.0, 200), (220.0, 200), (1.0, 413)], [0.01, None, 0.2], 10.0, 10.0)
    assert summary["ordinary_answers"] == 100 and summary["ordinary_failed"] == 2
    assert (summary["ordinary_p50_ms"], summary["ordinary_p99_ms"]) == (50.0, 99.0)
    assert (summary["expensive_answers"], summary["expensive_failed"], summary["expensive_max_ms"]) == (2, 1, 220.0)
    assert (summary["health_probes"], summary["health_unanswered"], summary["health_worst_ms"]) == (3, 1, 10_000.0)
    assert load_summary(answers, [], [0.01, 0.2], 10.0, 10.0)["health_worst_ms"] == 200.0


def test_render_shows_the_worst_request_and_the_targets() -> None:
    row = {"model": "ratings", "shape": "batch, most texts", "text": "short known words", "texts": 1000, "chars": 150_000}
    row.update(body_bytes=153_000, answer_bytes=255_000, in_process_ms=51.4, live_ms=67.8)
    slow = dict(row, shape="single explain", texts=1, chars=20_000, in_process_ms=260.0, live_ms=40.0)
    load = load_summary([(10.0, 200)] * 98 + [(400.0, 200)] * 2, [(150.0, 200)], [0.2], 10.0, 10.0)
    report = {"limits": DEFAULTS, "workers": 2, "shapes": [row, slow], "worst": row}
    report["load"] = [{"front": "bare server", "looping": True, **load}]
    text = render(report)
    assert "max_request_chars=150,000" in text
    assert "most expensive through the server: ratings, batch, most texts, short known words: 67.8 ms" in text
    assert "slowest in process: 260.0 ms, MISSED (<= 250 ms); through the server: 67.8 ms, met (<= 250 ms)" in text
    assert "/health met (<= 1000 ms), ordinary p99 MISSED (<= 300 ms)" in text
