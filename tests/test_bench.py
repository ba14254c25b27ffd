"""bench/: the server harness on a tiny server, and the pure functions of the bench commands on saved outputs."""

import itertools
import json
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests

from bench import common, harness, run, soak, wrk

DATA = Path(__file__).parent / "data"

# A stand-in server: answers 200 on /health at $HOST:$PORT, and starts a child, as gunicorn starts workers.
TINY_SERVER = textwrap.dedent(
    """
    import http.server, os, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(str(child.pid).encode())
        def log_message(self, *args):
            pass
    http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait until the process has exited: it no longer exists, or is a zombie waiting for its new parent to reap it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_serving_starts_on_loopback_and_stops_the_whole_process_group(tmp_path: Path) -> None:
    with harness.serving([sys.executable, "-c", TINY_SERVER], {"BIND": "0.0.0.0:1"}, tmp_path, name="tiny") as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        child = int(requests.get(server.url + "/health", timeout=5).text)
        assert harness.descendants(server.process.pid) == harness.live_descendants(server.process.pid) == [child]
        assert harness.connections_by_worker(server) == {child: 0}
        memory = harness.memory_snapshot(server.process.pid)
        assert len(memory["workers_mb"]) == 1 and 0 < memory["total_anon_mb"] < memory["total_mb"]
        server.check_alive()
    assert server.process.returncode is not None and gone(child)
    assert (server.stdout.name, server.stderr.name) == ("tiny.stdout.log", "tiny.stderr.log")


@pytest.mark.slow
def test_serving_fails_early_with_the_servers_stderr(tmp_path: Path) -> None:
    dying = [sys.executable, "-c", "import sys; sys.exit('boom: cannot start')"]
    with pytest.raises(harness.ServerError, match=r"(?s)exited with status 1.*boom: cannot start"):
        with harness.serving(dying, {}, tmp_path, timeout=20):
            pass


def test_server_env_picks_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIND", "0.0.0.0:80")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/somewhere/live")
    monkeypatch.setenv("WORKER_CLASS", "gthread")
    env = harness.server_env({"HOST": "0.0.0.0", "ACCESS_LOG": ""}, 1234)
    assert (env["HOST"], env["PORT"], env["ACCESS_LOG"], env["WORKER_CLASS"]) == ("127.0.0.1", "1234", "", "gthread")
    assert "BIND" not in env and "PROMETHEUS_MULTIPROC_DIR" not in env


def test_production_command_and_free_port() -> None:
    command = harness.production_command()
    assert Path(command[0]).name == "gunicorn" and command[1:] == ["-c", "gunicorn.conf.py"]
    assert common.server_command("bench.ceiling:app") == [*command, "bench.ceiling:app"]
    assert 1024 <= harness.free_port() <= 65535


def test_shown_command_can_be_pasted() -> None:
    shown = common.shown_command({"ACCESS_LOG": "", "WEB_CONCURRENCY": "2", "MODELS_DIR": "/x"}, 8001, "bench.ceiling:app")
    assert shown.startswith("HOST=127.0.0.1 PORT=8001 ACCESS_LOG='' WEB_CONCURRENCY=2 ")
    assert shown.endswith("gunicorn -c gunicorn.conf.py bench.ceiling:app") and "MODELS_DIR" not in shown


def test_phrases_path_from_option_then_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    given, variable = tmp_path / "given.tsv", tmp_path / "variable.tsv"
    given.touch()
    variable.touch()
    monkeypatch.setenv("KAGGLE_TEST", str(variable))
    assert common.phrases_path(given) == given
    assert common.phrases_path(None) == variable


def test_missing_phrases_file_is_one_line_saying_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAGGLE_TEST", str(tmp_path / "nowhere.tsv"))
    with pytest.raises(common.BenchError) as raised:
        common.phrases_path(None)
    message = str(raised.value)
    assert "\n" not in message
    for part in (
        str(tmp_path / "nowhere.tsv"),
        "--phrases",
        "KAGGLE_TEST",
        "../shared/data/kaggle/test.tsv",
        "Sentiment Analysis",
    ):
        assert part in message
    monkeypatch.delenv("KAGGLE_TEST")
    monkeypatch.setattr(common, "ROOT", tmp_path / "repo")  # the default is resolved from the repo root
    with pytest.raises(common.BenchError, match=f"not found at {tmp_path}/shared/data/kaggle/test.tsv: "):
        common.phrases_path(None)


def test_read_sentences_keeps_the_longest_phrase_of_each_sentence(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    rows = ["PhraseId\tSentenceId\tPhrase", "1\t2\ta fine film", "2\t2\tfine", "3\t1\tdull", "4\t1\t \t", "5\tx\tbad row"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert common.read_sentences(path) == ["dull", "a fine film"]
    path.write_text("id\ttext\n1\tx\n", encoding="utf-8")
    with pytest.raises(common.BenchError, match="expected a header"):
        common.read_sentences(path)


def test_sample_is_fixed_and_repeats_only_when_short() -> None:
    sentences = [f"s{index}" for index in range(10)]
    assert common.sample(sentences, 10) == common.sample(sentences, 10) != sentences
    assert sorted(common.sample(sentences, 10)) == sorted(sentences)
    assert common.sample(sentences, 25)[10:20] == common.sample(sentences, 10)


def test_growth() -> None:
    assert (common.growth(200.0, 210.0), common.growth(200.0, 190.0)) == (5.0, -5.0)


# --- bench.run ----------------------------------------------------------------------------------


def load(name: str, target: str, connections: int, spread: list[int]) -> dict:
    return common.load_result(target, connections, wrk.parse((DATA / "wrk" / name).read_text()), spread)


def test_load_result_from_a_wrk_report() -> None:
    assert load("socket_errors.txt", "service", 8, [3, 1]) == {
        "target": "service",
        "connections": 8,
        "requests": 2073,
        "requests_per_s": 516.67,
        "p50_ms": 6.97,
        "p99_ms": 30.6,
        "socket_errors": {"connect": 0, "read": 1, "write": 0, "timeout": 8},
        "non_2xx": 0,
        "errors": 9,
        "connections_per_worker": [3, 1],
    }


def test_query_paths_and_wrk_script() -> None:
    paths = run.query_paths(["a b", 'it\'s 100% "good"'])
    assert paths == ["/?query=a%20b", "/?query=it%27s%20100%25%20%22good%22"]
    script = run.wrk_script(paths)
    assert '"/?query=a%20b"' in script and 'wrk.format("GET", paths[next_index])' in script


@pytest.mark.parametrize(("spread", "uneven"), [([], False), ([8], False), ([4, 4], False), ([7, 1], True), ([0, 0], False)])
def test_uneven(spread: list[int], uneven: bool) -> None:
    assert run.uneven(spread) is uneven


def test_load_table_shows_the_ratio_to_the_ceiling() -> None:
    loads = [load("latency.txt", "service", 16, [1, 1]), load("socket_errors.txt", "ceiling", 16, [7, 1])]
    header, rule, service, ceiling, note = run.load_table(loads)
    assert header.split() == [
        "conns",
        "target",
        "req/s",
        "p50",
        "ms",
        "p99",
        "ms",
        "errors",
        "service/ceiling",
        "conns",
        "per",
        "worker",
    ]
    assert set(rule) == {"-"} and len(rule) == len(header)
    assert service.split() == ["16", "service", "1,570", "4.99", "7.14", "0", "3.04", "1/1"]
    assert ceiling.split() == ["16", "ceiling", "517", "6.97", "30.60", "9", "7/1"]
    assert note.startswith("note: uneven connections per worker")


def test_render_run_report() -> None:
    memory = {"master_mb": 70.0, "workers_mb": [36.0, 36.0], "total_mb": 142.0, "total_anon_mb": 120.0}
    one = {"total_mb": 150.5, "total_anon_mb": 129.6, "failed_requests": 0}
    two = {"total_mb": 172.9, "total_anon_mb": 140.3, "failed_requests": 0}
    report = {
        "environment": {"cpus": 2, "cpu_busy_before_percent": 50.0, "gunicorn": "gunicorn (version 27.0.1)", "wrk": "wrk 4.1"},
        "settings": {"warmup_s": 2, "duration_s": 10, "distinct_phrases": 300, "access_log": True, "env": {"THREADS": "1"}},
        "servers": {"service": {"worker_class": "sync", "command": "gunicorn A"}, "ceiling": {"command": "gunicorn B"}},
        "load": [load("latency.txt", "service", 16, [1, 1])],
        "batch": {"batch_size": 1000, "clients": 2, "phrases_per_s": 41037.2, "mean_batch_ms": 47.0, "batches": 9, "wall_s": 1.1}
        | {"failed_batches": 0},
        "memory": {
            "service_after_load": memory,
            "marginal": {"1_worker": one, "2_worker": two, "second_worker_adds_mb": 22.4, "second_worker_adds_anon_mb": 10.7},
        },
    }
    lines = run.render(report).splitlines()
    assert lines[0] == (
        "machine: 2 cpus (50.0% busy before the run: other processes compete, numbers are noisy), wrk on the same cpus; "
        "gunicorn (version 27.0.1); wrk 4.1"
    )
    assert lines[1] == "servers: worker class sync, 2 workers, env {'THREADS': '1'}, access log on"
    assert lines[4] == "load: wrk -t1, 2 s warm-up + 10 s per level, GET /?query=<one of 300 test.tsv sentences>"
    assert lines[-3].startswith("batch: POST / with 1000 queries, 2 clients: 41,037 phrases/s end to end, 47.0 ms mean")
    assert lines[-1].endswith("-> second worker adds 22.4 MB PSS (10.7 MB anonymous, the part no other process can shift)")


# --- bench.soak ---------------------------------------------------------------------------------


def test_interleaved_kinds_keep_the_shares_and_spread_them() -> None:
    kinds = soak.interleaved_kinds(4)
    assert len(kinds) == 400
    assert {kind.name: kinds.count(kind) for kind in soak.KINDS} == {kind.name: 4 * kind.share for kind in soak.KINDS}
    batches = [index for index, kind in enumerate(kinds) if kind.name == "batch"]
    assert max(b - a for a, b in itertools.pairwise(batches)) <= 25  # no stretch of the run without one


def test_plan_lines_are_what_soak_lua_reads() -> None:
    lines = soak.plan([f"sentence number {index}" for index in range(500)]).splitlines()
    assert len(lines) == 100 * soak.CYCLE_REPEAT
    fields = {line.split("\t")[0]: line.split("\t") for line in lines}
    assert all(len(parts) == 4 for parts in fields.values())
    assert fields["get"][1] == "GET" and fields["get"][2].startswith("/?query=sentence%20number%20")
    assert fields["ratings"][2].startswith("/ratings?query=") and fields["missing_query"][1:] == ["GET", "/", ""]
    assert fields["malformed_json"][1:] == ["POST", "/", '{"queries": ["unterminated']
    assert len(json.loads(fields["oversized"][3])["query"]) == soak.OVERSIZED_CHARS
    assert len(json.loads(fields["batch"][3])["queries"]) == soak.BATCH_SIZE


def soak_counts() -> dict:
    return soak.lua_counts((DATA / "wrk" / "soak.txt").read_text())


def test_lua_counts_per_kind_and_status() -> None:
    counts = soak_counts()
    assert counts["sent"]["get"] == 6497 and counts["statuses"]["oversized"] == {413: 184}
    assert soak.answered_by_status(counts) == {200: 8019, 400: 1014, 413: 184}
    with pytest.raises(common.BenchError, match="no SOAK_COUNTS line"):
        soak.lua_counts((DATA / "wrk" / "latency.txt").read_text())


def test_per_kind_flags_unexpected_statuses_and_unknown_answers() -> None:
    counts = {"sent": {"get": 10, "oversized": 2}, "statuses": {"get": {200: 9, 502: 1}, "unknown": {400: 3}}}
    rows = {row["kind"]: row for row in soak.per_kind(counts)}
    assert list(rows) == [kind.name for kind in soak.KINDS] + ["unknown"]
    assert rows["get"] == {"kind": "get", "expected": 200, "sent": 10, "answered": 10, "as_expected": 9, "unexpected": {502: 1}}
    assert rows["oversized"]["answered"] == 0 and rows["unknown"]["unexpected"] == {400: 3}


def test_log_findings_from_a_real_soak_log() -> None:
    findings = soak.log_findings((DATA / "bench" / "soak-server.stderr.log").read_text(), master=9499, killed=9525)
    assert findings == {
        "hang_up_logged": True,
        "master_loaded_models_after_hup": True,
        "error_lines": 1,
        "error_lines_about_killed_worker": 1,
        "other_error_lines": [],
    }
    assert soak.log_findings("not json\n[]\n", master=1, killed=2)["hang_up_logged"] is False


def soak_report(connections_held: int = 0) -> dict:
    """A soak report assembled from the saved wrk output and server log, with the events of that run."""
    counts = soak_counts()
    memory = {"total_mb": 205.3, "workers_mb": [56.1, 56.1], "total_anon_mb": 143.7}
    report = {
        "settings": {"server": "gunicorn", "wrk_threads": 1, "connections": 64, "duration_s": 20, "warmup_s": 5, "cpus": 2},
        "load": common.load_result("service", 64, wrk.parse((DATA / "wrk" / "soak.txt").read_text()), []),
        "sent": sum(counts["sent"].values()),
        "answered_by_status": soak.answered_by_status(counts),
        "kinds": soak.per_kind(counts),
        "kill": {"pid": 9525, "connections_held": connections_held, "connections_by_worker": {9525: 0}, "at_s": 6.83},
        "reload": {
            "at_s": 13.96,
            "workers_before": [1, 2],
            "workers_after": [3, 4],
            "workers_replaced": True,
            "replaced_ms": 892.3,
        },
        "server_log": soak.log_findings((DATA / "bench" / "soak-server.stderr.log").read_text(), 9499, 9525),
        "memory": {"start": memory, "before_reload": memory, "end": memory, "growth_percent": 0.0, "anon_growth_percent": 0.0},
    }
    report["settings"]["wrk"] = "wrk 4.1"
    report["kill"]["recovery"] = {"recovered": True, "recovery_ms": 249.0, "workers_full_ms": 32.8}
    report["reload"] |= {"sentiment_version_before": "v1", "sentiment_version_after": "v1"}
    report["assessment"] = soak.assess(report)
    return report


def test_assess_allows_the_requests_the_killed_worker_held() -> None:
    assert soak_report()["assessment"] == {
        "socket_failures": 1,
        "unexpected_answers": 0,
        "timeouts": 0,
        "explained_by_kill_at_most": 1,
        "within_expectation": True,
    }
    report = soak_report()
    report["load"]["socket_errors"]["read"] = 2
    assert soak.assess(report)["within_expectation"] is False
    report["kill"]["connections_held"] = 2
    assert soak.assess(report)["within_expectation"] is True
    report["load"]["socket_errors"]["timeout"] = 1
    assert soak.assess(report)["within_expectation"] is False


def test_render_soak_report() -> None:
    text = soak.render(soak_report())
    assert "requests: 9,282 sent (soak.lua count), 9,217 answered (wrk: 9,217 requests, 460 req/s); 65 never answered" in text
    assert "answered by status: 200: 8,019, 400: 1,014, 413: 184" in text
    assert "socket errors: connect 0, read 1, write 0, timeout 0" in text
    assert "observed 1 failures and 0 timeouts -> as expected" in text
    assert "latency, all kinds together: p50 138.81 ms, p99 358.33 ms" in text
    assert "recovered in 249.0 ms (full set of workers after 32.8 ms" in text
    assert "master logged 'Hang up' and loaded the models again" in text
    assert "  get                  200     6,497     6,453       6,453  -" in text.splitlines()
