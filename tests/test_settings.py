"""Settings (lib/settings.py): defaults, the environment, and one-line errors naming the key."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import app
from app import create_app
from lib.settings import (
    LOCAL_ORIGINS,
    MAX_EXPLAIN_CHARS_RANGE,
    MAX_EXPLAIN_TEXTS_RANGE,
    MAX_EXPLAINED_TERMS_RANGE,
    MAX_REQUEST_CHARS_RANGE,
    NUMERIC_RANGES,
    ConfigError,
    ServerSettings,
    Settings,
    available_cpus,
    cgroup_cpu_quota,
)
from tests.doc_pages import PAGES
from tests.support.harness import ROOT


@pytest.mark.parametrize(
    ("key", "value"), [("MAX_BATCH", "lots"), ("MAX_QUERY_CHARS", "0"), ("MAX_BODY_BYTES", "-5"), ("LOG_LEVEL", "loud")]
)
def test_bad_config_names_key_and_value(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"Config '{key}' has value"):
        Settings.from_mapping({key: value})


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch, tiny_models: Path) -> None:
    monkeypatch.setenv("MAX_BATCH", "2")
    monkeypatch.setenv("MODELS_DIR", str(tiny_models))
    response = create_app().test_client().post("/", json={"queries": ["a", "b", "c"]})
    assert response.status_code == 413 and "limit is 2" in response.json["message"]


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("0", False), ("false", False), ("", False)])
def test_debug_is_read_with_the_other_settings(value: str, on: bool) -> None:
    assert Settings.from_mapping({"DEBUG": value}).debug is on
    assert Settings.from_mapping({}).debug is False


def test_cors_settings() -> None:
    assert Settings.from_mapping({}).cors_origins == (LOCAL_ORIGINS,)
    assert Settings.from_mapping({"CORS_ORIGINS": " https://a.example , * "}).cors_origins == ("https://a.example", "*")
    with pytest.raises(ConfigError, match=r"Config 'CORS_ORIGINS' has value 'a\.example'"):
        Settings.from_mapping({"CORS_ORIGINS": "a.example"})


@pytest.mark.parametrize("origin", ["^(unclosed", "https://a.example)", "^https://[a-", "https://a+++"])
def test_cors_origin_that_is_no_regular_expression_is_one_line_naming_it(origin: str) -> None:
    """flask-cors compiles an origin with regex characters in it: a bad one is refused here, not in a traceback at start."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_mapping({"CORS_ORIGINS": f"https://ok.example,{origin}"})
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"Config 'CORS_ORIGINS' has value {origin!r}. Not a valid regular expression (")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"PORT": "99999"}, "Config 'PORT' has value '99999'. Not a port number (1-65535)."),
        ({"PORT": "http"}, "Config 'PORT' has value 'http'. Not a port number (1-65535)."),
        ({"LOG_LEVEL": "verbose"}, "Config 'LOG_LEVEL' has value 'VERBOSE'. Expected DEBUG, INFO, WARNING, ERROR or CRITICAL."),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent"},
            "Config 'PROMETHEUS_MULTIPROC_DIR' has value '/nonexistent'. Not a writable folder.",
        ),
        ({"MAX_BATCH": "-1"}, "Config 'MAX_BATCH' has value '-1'. Not a whole number from 1 to 100,000."),
        ({"HOST": "not a host"}, "Config 'HOST' has value 'not a host'. Not an IP address or a host name this machine resolves"),
        ({"LOG_QUERIES": "all"}, "Config 'LOG_QUERIES' has value 'all'. Expected none, hmac or text."),
        ({"LOG_QUERIES": "hmac"}, "Config 'QUERY_LOG_KEY' must be a secret of at least 16 characters when LOG_QUERIES=hmac."),
        ({"DEBUG": "yes please"}, "Config 'DEBUG' has value 'yes please'. Expected 1 or 0."),
    ],
)
def test_development_server_stops_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variables: dict[str, str], message: str
) -> None:
    for key in ("HOST", "PORT", "LOG_LEVEL", "PROMETHEUS_MULTIPROC_DIR", "LOG_QUERIES", "QUERY_LOG_KEY", "DEBUG", "MAX_BATCH"):
        monkeypatch.delenv(key, raising=False)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert app.main() == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {message}")


@pytest.mark.slow
def test_development_server_command_stops_with_one_line() -> None:
    """The same, as `python app.py` prints it."""
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env={**env, "PORT": "99999"}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: Config 'PORT' has value '99999'. Not a port number (1-65535)."


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2: --cpus 1.5
        ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
        ({}, None),  # no cgroup files at all
    ],
)
def test_cpu_quota_is_read_from_cgroup_v2_or_v1(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == expected


def test_workers_default_to_the_cpus_allowed_not_the_hosts(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one worker
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_server_settings_defaults_and_overrides() -> None:
    assert ServerSettings.from_mapping({}).port == 8000 and ServerSettings.from_mapping({}).host == "127.0.0.1"
    given = ServerSettings.from_mapping({"WEB_CONCURRENCY": "3", "DRAIN_SECONDS": "2.5", "CLIENT_TIMEOUT": "0.5"})
    assert (given.workers, given.drain_seconds, given.client_timeout) == (3, 2.5, 0.5)


def test_trusted_proxies_are_read_as_a_list() -> None:
    assert Settings.from_mapping({}).forwarded_allow_ips == ()
    assert Settings.from_mapping({"FORWARDED_ALLOW_IPS": " 10.0.0.1, 127.0.0.1 ,"}).forwarded_allow_ips == (
        "10.0.0.1",
        "127.0.0.1",
    )
    networks = " 10.0.0.0/8, fd00::/8, ::1, *"
    assert Settings.from_mapping({"FORWARDED_ALLOW_IPS": networks}).forwarded_allow_ips == ("10.0.0.0/8", "fd00::/8", "::1", "*")


@pytest.mark.parametrize("entry", ["bogus", "10.0.0.0/33", "10.0.0.5/8", "300.1.1.1", "10.0.0.*", "::1::2"])
def test_trusted_proxy_that_is_no_address_or_network_is_one_line_naming_it(entry: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_mapping({"FORWARDED_ALLOW_IPS": f"10.0.0.1,{entry}"})
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"Config 'FORWARDED_ALLOW_IPS' has value {entry!r}. Not an IP address or network (")


@pytest.mark.parametrize("settings", [Settings, ServerSettings])
def test_host_is_an_address_or_a_name_this_machine_resolves(settings: Any) -> None:
    for given in ("127.0.0.1", "0.0.0.0", "::1", "::", "localhost"):
        assert settings.from_mapping({"HOST": given}).host == given
    assert ServerSettings.from_mapping({"HOST": "::1"}).address == "::1"
    assert ServerSettings.from_mapping({"HOST": "localhost"}).address in ("127.0.0.1", "::1")  # granian takes addresses only
    for bad in ("not a host", "999.1.1.1", "", "host.invalid", "a" * 300, "1.2.3.4:80"):
        with pytest.raises(ConfigError) as refused:
            settings.from_mapping({"HOST": bad})
        [line] = str(refused.value).splitlines()
        assert line.startswith(f"Config 'HOST' has value {bad!r}. Not an IP address or a host name this machine resolves (")


#: What an operator or a template may put in a numeric setting: infinities, NaN, the huge, the negative, zero, words.
ATTACKS: list[Any] = ["inf", "-inf", "nan", "1e300", str(10**30), "-1", "0", "lots", "", "1.5", "0x10", " 7 "]
ATTACKS += [math.inf, -math.inf, math.nan, 1e300, 10**30, -1, 0, 1.5, True, None]


def read_setting(key: str, value: Any) -> float:
    """The value ``key`` takes once read from ``{key: value}``, by whichever settings object reads it."""
    field = key.lower().replace("web_concurrency", "workers")
    in_service = hasattr(Settings(), field)
    return getattr((Settings if in_service else ServerSettings).from_mapping({key: value}), field)


@pytest.mark.parametrize("key", NUMERIC_RANGES)
def test_every_numeric_setting_is_within_its_finite_range_or_refused_in_one_line(key: str) -> None:
    """Infinity, NaN, 1e300, 10**30, -1, 0, words: each value is read within the range or refused naming the key."""
    low, high = NUMERIC_RANGES[key]
    assert math.isfinite(low) and math.isfinite(high) and 0 <= low < high
    assert read_setting(key, str(low)) == low and read_setting(key, str(high)) == high
    step = 1 if isinstance(low, int) else 0.01
    for outside in (low - step, high + step):
        with pytest.raises(ConfigError, match=f"^Config {key!r} has value "):
            read_setting(key, str(outside))
    for value in ATTACKS:
        try:
            number = read_setting(key, value)
        except ConfigError as refused:
            [line] = str(refused).splitlines()
            assert re.fullmatch(rf"Config {key!r} has value {re.escape(repr(value))}\. Not .*\.", line), line
            stated = line.replace(",", "")
            assert all(f"{end:g}" in stated if isinstance(end, float) else str(end) in stated for end in (low, high)), line
        else:
            assert math.isfinite(number) and low <= number <= high, (key, value, number)


@pytest.mark.slow  # two processes, each importing scikit-learn: seconds, not milliseconds
def test_server_check_loads_the_models_and_stops() -> None:
    done = subprocess.run([sys.executable, "-m", "lib.server", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("ok: ratings-")
    bad = {**os.environ, "MODELS_DIR": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "lib.server", "--check"], cwd=ROOT, env=bad, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("Error: ")


@pytest.mark.parametrize(
    ("key", "field", "bounds"),
    [
        ("MAX_REQUEST_CHARS", "max_request_chars", MAX_REQUEST_CHARS_RANGE),
        ("MAX_EXPLAIN_TEXTS", "max_explain_texts", MAX_EXPLAIN_TEXTS_RANGE),
        ("MAX_EXPLAIN_CHARS", "max_explain_chars", MAX_EXPLAIN_CHARS_RANGE),
        ("MAX_EXPLAINED_TERMS", "max_explained_terms", MAX_EXPLAINED_TERMS_RANGE),
    ],
)
def test_cost_budgets_take_a_finite_range_and_name_the_key_otherwise(key: str, field: str, bounds: tuple[int, int]) -> None:
    low, high = bounds
    assert low <= getattr(Settings(), field) <= high
    for value in (low, high):
        assert getattr(Settings.from_mapping({key: str(value)}), field) == value
    for text in (str(low - 1), str(high + 1), "lots", "1.5"):
        with pytest.raises(ConfigError) as raised:
            Settings.from_mapping({key: text})
        assert str(raised.value) == f"Config {key!r} has value {text!r}. Not a whole number from {low:,} to {high:,}."


EN_DASH = "\N{EN DASH}"  # the pages write ranges as 1\N{EN DASH}100


@pytest.mark.parametrize("key", NUMERIC_RANGES)
def test_docs_state_each_numeric_settings_range(key: str) -> None:
    """A table row of the docs naming the setting in its first column states its range, as the code has it."""
    low, high = NUMERIC_RANGES[key]
    stated = f"{low:,}{EN_DASH}{high:,}" if isinstance(low, int) else f"{low:,g}{EN_DASH}{high:,g}"
    lines = [line for page in PAGES for line in page.read_text().splitlines()]
    rows = [line for line in lines if line.startswith("| ") and f"`{key}`" in line.split("|")[1]]
    assert any(stated in row for row in rows), (key, stated, rows)
