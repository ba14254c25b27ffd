"""bench/: the pure functions of the bench commands on saved outputs."""

import itertools
import json
import sys
from pathlib import Path

import pytest

from bench import common, linear_speed, run, soak, summary, wrk
from lib import paths
from tests.support import harness

DATA = Path(__file__).parent / "data"


def test_shown_command_can_be_pasted() -> None:
    shown = common.shown_command({"ACCESS_LOG": "", "WEB_CONCURRENCY": "2", "MODELS_DIR": "/x"}, 8001)
    assert shown.startswith("HOST=127.0.0.1 PORT=8001 ACCESS_LOG='' WEB_CONCURRENCY=2 ")
    assert shown.endswith("python -m lib.server") and "MODELS_DIR" not in shown


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
    for part in (str(tmp_path / "nowhere.tsv"), "lib/data/", "--phrases", "KAGGLE_TEST", "Sentiment Analysis"):
        assert part in message
    monkeypatch.delenv("KAGGLE_TEST")
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path / "repo" / "lib" / "data")  # neither lib/data/ nor the shared copy
    monkeypatch.setattr(paths, "SHARED_DATA_DIR", tmp_path / "shared" / "data" / "kaggle")
    with pytest.raises(common.BenchError, match=f"not found at {tmp_path}/repo/lib/data/test.tsv: put it in lib/data/"):
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


# --- bench.run and bench.summary ---------------------------------------------------------------


def load(name: str, target: str, connections: int, spread: list[int]) -> dict:
    return common.load_result(target, connections, wrk.parse((DATA / "wrk" / name).read_text()), spread)


def run_report() -> dict:
    """A run with the defaults (the service bare and behind nginx, and the ceiling) on a machine other work kept busy."""
    return json.loads((DATA / "bench" / "run-report.json").read_text())


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


def test_candidates_run_the_production_command_and_the_ceiling_under_its_settings() -> None:
    production = harness.production_command()
    assert list(run.CANDIDATES) == ["granian", "granian-nginx", "ceiling"]
    granian, proxied, ceiling = run.CANDIDATES.values()
    assert granian.command == production and granian.env == {}
    assert (proxied.command, proxied.env, proxied.behind_nginx, granian.behind_nginx) == (production, {}, True, False)
    assert ceiling.command == [sys.executable, "-m", "bench.ceiling"] and ceiling.env == {} and not ceiling.behind_nginx
    assert [c.ready_path for c in run.CANDIDATES.values()] == ["/health", "/health", "/"]
    assert [c.serves_models for c in run.CANDIDATES.values()] == [True, True, False]
    args = run.parse_args(["--no-access-log", "--workers", "3"])
    assert run.candidate_env(args, ceiling, 5) == {"ACCESS_LOG": "", "WEB_CONCURRENCY": "5"}


def test_run_options() -> None:
    args = run.parse_args([])
    assert args.servers == list(run.CANDIDATES) and (args.repeat, args.warmup, args.duration) == (5, 2, 6)
    assert (args.connections, args.workers, args.memory_workers) == ([16, 64], 2, [2, 5])
    assert run.parse_args(["--servers", "granian", "ceiling", "granian", "--repeat", "1"]).servers == ["granian", "ceiling"]
    for wrong in (["--repeat", "0"], ["--servers", "uvicorn"], ["--memory-workers", "0"]):
        with pytest.raises(SystemExit):
            run.parse_args(wrong)


def test_rotation_gives_every_server_every_place_in_turn() -> None:
    names = ["A", "B", "C", "D"]
    orders = [summary.rotation(names, index) for index in range(5)]
    assert orders[:4] == [list("ABCD"), list("BCDA"), list("CDAB"), list("DABC")]
    assert orders[4] == orders[0] and names == list("ABCD")
    assert all(sorted(column) == names for column in zip(*orders[:4], strict=True))  # each place held by each server once
    assert summary.rotation([], 3) == [] and summary.rotation(["A"], 2) == ["A"]


def test_round_ratios_pair_each_run_with_the_ceilings_run_of_the_same_round() -> None:
    # The machine speeds up over the rounds: each ratio stays 0.5 but for one outlier round.
    server, ceiling = [1000.0, 1250.0, 900.0], [2000.0, 2500.0, 3000.0]
    assert summary.round_ratios(server, ceiling) == [0.5, 0.5, 0.3]
    assert summary.round_ratios([10.0, 20.0], [0.0, 40.0]) == [0.5]  # no ceiling run to compare with: left out
    with pytest.raises(ValueError):
        summary.round_ratios([1.0, 2.0], [1.0])


def loads_report(runs: dict[str, list[float]], connections: int = 16) -> dict:
    """A report holding only each server's req/s of every run, in round order, at one connections level."""
    return {
        "servers": {name: {"load": [{"connections": connections, "runs_requests_per_s": rates}]} for name, rates in runs.items()}
    }


def test_ceiling_ratio_is_the_median_of_the_per_round_ratios() -> None:
    report = loads_report({"granian": [1000.0, 1250.0, 900.0], "ceiling": [2000.0, 2500.0, 3000.0]})
    assert summary.ceiling_ratios(report, "granian", 16) == [0.5, 0.5, 0.3]
    assert summary.ceiling_ratio(report, "granian", 16) == 0.5  # the ratio of the medians would be 1000 / 2500 = 0.4
    assert summary.ceiling_ratio(report, "ceiling", 16) == 1.0
    even = loads_report({"granian": [1000.0, 1500.0], "ceiling": [2000.0, 2000.0]})
    assert summary.ceiling_ratio(even, "granian", 16) == pytest.approx(0.625)  # an even count: the mean of the middle two
    assert summary.ceiling_ratio(even, "granian", 64) is None  # a level not measured
    assert summary.ceiling_ratio(loads_report({"granian": [1000.0]}), "granian", 16) is None  # no ceiling
    assert summary.ceiling_ratios(loads_report({"granian": [1.0, 2.0], "ceiling": [2.0]}), "granian", 16) is None


def test_load_rounds_measure_every_server_once_per_round_in_rotating_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    rates = iter(range(1, 100))

    def measured_run(
        _binary: str, name: str, _server: object, _script: Path, connections: int, round_number: int, _args: object
    ) -> dict:
        calls.append((connections, round_number, name))
        return {"connections": connections, "requests_per_s": float(next(rates)), "errors": 0}

    monkeypatch.setattr(run, "measured_run", measured_run)
    args = run.parse_args(["--repeat", "3", "--connections", "16", "64"])
    servers = dict.fromkeys(["A", "B", "C"], None)
    loads = run.load_rounds("wrk", servers, Path("phrases.lua"), args)  # type: ignore[arg-type]
    assert [name for _, _, name in calls] == list("ABCBCACAB" * 2)
    assert [(c, r) for c, r, _ in calls[:4]] == [(16, 1), (16, 1), (16, 1), (16, 2)] and calls[9][:2] == (64, 1)
    assert list(loads) == ["A", "B", "C"] and [load["connections"] for load in loads["A"]] == [16, 64]
    assert loads["A"][0]["runs_requests_per_s"] == [1.0, 6.0, 8.0]  # in round order, so round r pairs with round r
    assert loads["C"][1]["runs_requests_per_s"] == [12.0, 14.0, 16.0] and loads["C"][1]["requests_per_s"] == 14.0


def test_add_ceiling_ratios_keeps_the_per_round_ratios_and_their_median() -> None:
    servers = loads_report({"granian": [1000.0, 1250.0, 900.0], "ceiling": [2000.0, 2500.0, 3000.0]})["servers"]
    levels = {name: info["load"][0] for name, info in run.add_ceiling_ratios(servers).items()}
    assert (levels["granian"]["x_ceiling_by_round"], levels["granian"]["x_ceiling"]) == ([0.5, 0.5, 0.3], 0.5)
    assert (levels["ceiling"]["x_ceiling_by_round"], levels["ceiling"]["x_ceiling"]) == ([1.0, 1.0, 1.0], 1.0)
    alone = run.add_ceiling_ratios(loads_report({"granian": [1000.0]})["servers"])
    assert alone["granian"]["load"][0] == {
        "connections": 16,
        "runs_requests_per_s": [1000.0],
        "x_ceiling_by_round": None,
        "x_ceiling": None,
    }


def test_header_says_when_runs_are_interleaved() -> None:
    settings = {"warmup_s": 2, "repeat": 3, "duration_s": 10, "interleaved": True}
    assert summary.runs_text(settings) == (
        "runs interleaved: every server up at once, 3 rounds per level, each running every server once in an order "
        "rotating by one place per round, 2 s warm-up before each 10 s run (median run shown)"
    )
    assert summary.runs_text({**settings, "interleaved": False}) == "2 s warm-up then 3 x 10 s per level (median run shown)"


def test_median_run_keeps_one_whole_run_and_every_errors() -> None:
    runs = [load("latency.txt", "granian", 16, [2, 2]), load("socket_errors.txt", "granian", 16, [3, 1])]
    runs.append({**runs[0], "requests_per_s": 2000.0, "errors": 1})
    chosen = summary.median_run(runs)
    assert chosen == {**runs[0], "runs_requests_per_s": [1569.53, 516.67, 2000.0], "errors_all_runs": 10}
    assert summary.median_run(runs[:2])["requests_per_s"] == 516.67  # an even count: the lower middle run
    assert summary.median_run(runs[:1])["runs_requests_per_s"] == [1569.53]


@pytest.mark.parametrize(
    ("spread", "uneven"), [([], False), ([8], False), ([4, 4], False), ([7, 1], True), ([0, 0], False), ([1, 0], False)]
)
def test_uneven(spread: list[int], uneven: bool) -> None:
    assert summary.uneven(spread) is uneven


@pytest.mark.parametrize(
    ("label", "value", "verdict"),
    [
        ("req/s at 16 connections >= 0.40x ceiling", 0.40, "met"),
        ("req/s at 16 connections >= 0.40x ceiling", 0.399, "not met"),
        ("p99 at 16 connections <= 10 ms", 10.0, "met"),
        ("p99 at 16 connections <= 10 ms", 10.01, "not met"),
        ("total PSS with 2 workers <= 300 MB", 299.9, "met"),
        ("batch end to end >= 0.5x in-process", None, "n/a"),
    ],
)
def test_verdict_includes_the_limit(label: str, value: float | None, verdict: str) -> None:
    target = next(target for target in summary.TARGETS if target.label == label)
    assert summary.verdict(target, value) == verdict


def test_measures_from_a_saved_run() -> None:
    report = run_report()
    assert summary.ceiling_ratios(report, "granian", 16) == pytest.approx([0.5269, 0.305, 0.48, 0.4136, 0.3102], abs=1e-4)
    assert summary.ceiling_ratio(report, "granian", 16) == pytest.approx(1583.53 / 3828.56)
    assert summary.ceiling_ratio(report, "ceiling", 64) == 1.0
    assert (summary.p99(report, "granian-nginx", 64), summary.p99(report, "granian", 32)) == (93.89, None)
    assert summary.batch_ratio(report, "granian") == pytest.approx(14783.7 / 10796.6)
    assert (summary.pss(report, "granian", 2), summary.pss(report, "granian", 5), summary.pss(report, "granian", 3)) == (
        203.2,
        241.9,
        None,
    )
    assert summary.batch_ratio(report, "ceiling") is None and summary.pss(report, "ceiling", 2) is None
    for name, info in report["servers"].items():
        for load in info["load"]:
            ratios = summary.ceiling_ratios(report, name, load["connections"])
            assert ratios and load["x_ceiling_by_round"] == [round(ratio, 4) for ratio in ratios]
            ratio = summary.ceiling_ratio(report, name, load["connections"])
            assert ratio is not None and load["x_ceiling"] == round(ratio, 4)


def test_target_results_judge_every_candidate_but_the_ceiling() -> None:
    report = run_report()
    results = summary.target_results(report)
    assert [result["target"] for result in results] == [target.label for target in summary.TARGETS]
    assert results == report["targets"]  # what bench.run wrote is what the saved numbers give
    assert results[0] == {
        "target": "req/s at 16 connections >= 0.40x ceiling",
        "values": {"granian": 0.41, "granian-nginx": 0.48},
        "verdicts": {"granian": "met", "granian-nginx": "met"},
    }
    assert results[2]["verdicts"] == {"granian": "not met", "granian-nginx": "not met"}
    del report["servers"]["ceiling"]
    assert summary.target_results(report)[0]["verdicts"]["granian"] == "n/a"


def test_render_run_report() -> None:
    header, loads, servers, batches, targets = (part.splitlines() for part in summary.render(run_report()).split("\n\n"))
    assert header[0] == (
        "machine: 2 cpus (99.5% busy before the run: other processes compete, numbers are noisy), wrk on the same cpus; "
        "granian 2.8.7; wrk debian/4.1.0-3+b2 [epoll]; python 3.11.7"
    )
    assert header[1].startswith("load: wrk -t1, runs interleaved: every server up at once, 5 rounds per level")
    assert header[1].endswith("GET /?query=<one of 300 test.tsv sentences>; 2 workers each, access log on")
    assert [line.split()[0] for line in header[2:5]] == ["granian", "granian-nginx", "ceiling"]
    assert header[2].endswith(".venv/bin/python -m lib.server  [granian wsgi]")
    assert header[4].endswith(".venv/bin/python -m bench.ceiling  [granian wsgi]")
    assert header[3].endswith("[granian wsgi behind nginx]")
    assert (
        header[5]
        == "in process: NLPModel.predict_texts on the same 1000 sentences, one thread: 10,797 phrases/s (92.6 ms per batch)"
    )

    assert loads[0].split()[:5] == ["server", "conns", "req/s", "p50", "ms"] and set(loads[1]) == {"-"} == set(servers[1])
    assert len(loads[1]) == len(loads[0]) and loads[0].index("conns") + 5 == loads[2].index("16") + 2  # numbers flush right
    assert loads[2].split() == [
        "granian",
        "16",
        "1,584",
        "5.62",
        "53.53",
        "0",
        "0.41",
        "2,244/1,054/2,441/1,584/1,537",
        "0.53/0.31/0.48/0.41/0.31",
        "9/7",
    ]
    assert loads[7].split()[:7] == ["ceiling", "64", "3,328", "5.34", "49.14", "0", "1.00"]
    assert loads[8].startswith("errors: socket errors and non-2xx answers summed over every run")
    assert loads[9].startswith("x ceiling: the median over the runs of req/s divided by the ceiling's req/s in the same round")
    assert len(loads) == 10  # no worker held most connections: no note

    assert servers[0].split("  ")[-2:] == ["PSS MB 2 workers", "PSS MB 5 workers"]
    assert servers[2].split() == ["granian", "0.41", "0.45", "53.53", "106.05", "14,784", "1.37", "203.2", "241.9"]
    assert servers[4].split() == ["ceiling", "1.00", "1.00", "18.20", "49.14", "-", "-", "-", "-"]

    assert [line.split(":")[0] for line in batches] == ["batch granian", "batch granian-nginx"]
    assert batches[0] == (
        "batch granian: POST / with 1000 queries, 2 clients: 14,784 phrases/s end to end, 133.7 ms mean per batch "
        "(76 batches in 5.14 s, 0 failed)"
    )

    assert targets[0].split() == ["target", "granian", "granian-nginx"]
    assert [line.split("  ")[0] for line in targets[2:8]] == [target.label for target in summary.TARGETS]
    assert [cell.strip() for cell in targets[2].split("  ") if cell.strip()][1:] == ["met (0.41x)", "met (0.48x)"]
    assert [cell.strip() for cell in targets[5].split("  ") if cell.strip()][1:] == ["not met (106.05 ms)", "not met (93.89 ms)"]
    assert targets[7].endswith("met (203.20 MB)      met (203.60 MB)")
    assert targets[8] == "every target met by: none"


def test_render_marks_what_a_run_did_not_measure() -> None:
    report = run_report()
    report["settings"]["connections"] = [16]
    for info in report["servers"].values():
        info["load"] = info["load"][:1]
    report["servers"] = {"granian": report["servers"]["granian"]}
    text = summary.render(report)
    assert "req/s at 16 connections >= 0.40x ceiling  n/a" in text and "p99 at 16 connections <= 10 ms            not met" in text
    assert summary.targets_table({"servers": {"ceiling": {}}}) == ["targets: no candidate server was measured"]


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
    findings = soak.log_findings((DATA / "bench" / "soak-server.stderr.log").read_text(), master=648, killed=659)
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
        "settings": {"server": "lib.server", "wrk_threads": 1, "connections": 64, "duration_s": 20, "warmup_s": 5, "cpus": 2},
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
        "server_log": soak.log_findings((DATA / "bench" / "soak-server.stderr.log").read_text(), 648, 659),
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
    assert "the parent logged the HUP and loaded the models again" in text
    assert "  get                  200     6,497     6,453       6,453  -" in text.splitlines()


def test_memory_of_a_proxied_candidate_sums_both_process_trees() -> None:
    app = {"master_mb": 80.0, "workers_mb": [60.0, 60.0], "total_mb": 200.0, "total_anon_mb": 40.0}
    nginx = {"master_mb": 2.0, "workers_mb": [3.0, 3.0], "total_mb": 8.0, "total_anon_mb": 1.5}
    assert run.combined([app]) == app
    both = run.combined([app, nginx])
    assert (both["total_mb"], both["total_anon_mb"], both["proxy_mb"], both["workers_mb"]) == (208.0, 41.5, 8.0, [60.0, 60.0])


def test_worker_class_is_read_from_either_log(tmp_path: Path) -> None:
    def server(stderr: str, stdout: str = "") -> harness.Server:
        (tmp_path / "err.log").write_text(stderr)
        (tmp_path / "out.log").write_text(stdout)
        return harness.Server("http://127.0.0.1:1", None, tmp_path / "out.log", tmp_path / "err.log")  # type: ignore[arg-type]

    assert run.worker_class(server('{"message": "Starting granian (main PID: 7)"}')) == "granian wsgi"
    assert run.worker_class(server("", "Starting granian")) == "granian wsgi"
    assert run.worker_class(server("")) == "unknown"


@pytest.mark.parametrize(
    ("one_us", "ratio", "batch", "expected"),
    [
        (99.0, 1.9, 25_000, "targets met"),
        (100.0, 2.0, 20_000, "targets met"),
        (101.5, 1.9, 25_000, "targets missed: one text us 101.5 (target <= 100)"),
        (90.0, 2.1, 19_000, "targets missed: ratio to naive Bayes 2.1 (target <= 2); batch texts/s 19,000.0 (target >= 20,000)"),
    ],
)
def test_linear_speed_verdict_names_each_missed_target(one_us: float, ratio: float, batch: float, expected: str) -> None:
    assert linear_speed.verdict(one_us, ratio, batch) == expected
