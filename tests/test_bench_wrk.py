"""bench/wrk.py's parser, on real wrk 4.1 reports saved under tests/data/wrk."""

from pathlib import Path

import pytest

from bench.wrk import WrkError, command, parse, to_ms

DATA = Path(__file__).parent / "data" / "wrk"


def report(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_plain_report_without_latency_distribution() -> None:
    result = parse(report("plain.txt"))
    assert (result.requests, result.duration_s, result.requests_per_s) == (889, 1.0, 888.29)
    assert result.latency_ms == {}
    assert result.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert (result.non_2xx_3xx, result.errors) == (0, 0)
    with pytest.raises(WrkError, match="--latency"):
        result.percentile(50)


def test_latency_distribution_in_ms() -> None:
    result = parse(report("latency.txt"))
    assert (result.requests, result.duration_s, result.requests_per_s) == (3296, 2.1, 1569.53)
    assert result.latency_ms == {50.0: 4.99, 75.0: 5.34, 90.0: 5.72, 99.0: 7.14}
    assert (result.percentile(50), result.percentile(99)) == (4.99, 7.14)
    assert result.errors == 0


def test_latency_in_seconds_is_read_despite_wrk_padding_the_unit() -> None:
    """wrk pads "s" to the width of "ms" with a trailing space: "99%    1.17s "."""
    result = parse(report("latency_seconds.txt"))
    assert result.latency_ms == {50.0: 15.98, 75.0: 40.3, 90.0: 386.18, 99.0: 1170.0}
    assert result.requests == 12817


def test_error_statuses_are_counted() -> None:
    result = parse(report("not_found.txt"))
    assert result.requests == result.non_2xx_3xx == result.errors == 2434
    assert result.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert result.percentile(99) == 2.75


def test_socket_errors_by_kind() -> None:
    # A worker SIGKILLed mid-run (read error), then every worker SIGSTOPped past wrk's 1 s timeout.
    result = parse(report("socket_errors.txt"))
    assert result.socket_errors == {"connect": 0, "read": 1, "write": 0, "timeout": 8}
    assert (result.non_2xx_3xx, result.errors) == (0, 9)
    assert (result.requests, result.duration_s, result.percentile(90)) == (2073, 4.01, 17.43)


def test_report_is_found_among_other_lines() -> None:
    extra = 'SOAK_COUNTS {"sent": {}}\nsome script output\n'
    assert parse(extra + report("latency.txt") + extra) == parse(report("latency.txt"))


@pytest.mark.parametrize("text", ["", report("connect_refused.txt"), "Requests/sec: 12.00\n"])
def test_not_a_report_is_refused(text: str) -> None:
    with pytest.raises(WrkError, match="not a wrk report"):
        parse(text)


@pytest.mark.parametrize(
    ("value", "ms"),
    [("850.00us", 0.85), ("1.23ms", 1.23), ("2.01s", 2010.0), ("1.50m", 90_000.0), ("2.00h", 7_200_000.0), ("0us", 0.0)],
)
def test_to_ms(value: str, ms: float) -> None:
    assert to_ms(value) == ms


@pytest.mark.parametrize("value", ["1.2", "ms", "-1ms", "1.2 ms", "3d"])
def test_to_ms_refuses_other_text(value: str) -> None:
    with pytest.raises(WrkError, match="duration"):
        to_ms(value)


def test_command_passes_script_arguments_after_double_dash() -> None:
    argv = command("wrk", "http://127.0.0.1:1/", 64, 5, Path("soak.lua"), 2, "plan.tsv")
    assert argv == ["wrk", "-t2", "-c64", "-d5s", "--latency", "-s", "soak.lua", "http://127.0.0.1:1/", "--", "plan.tsv"]
    assert "--" not in command("wrk", "http://127.0.0.1:1/", 16, 10, Path("phrases.lua"))
