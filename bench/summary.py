"""The pure half of bench.run: order the rounds, pick the median run, compare servers with the ceiling round by round,
judge the targets, lay out text.

Everything here reads a report (the dict bench.run writes as JSON) and nothing else, so it is tested on saved data.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.common import Report

REFERENCE = "ceiling"  # bench/ceiling.py: a constant-JSON Flask view under the production server's granian settings
BUSY_WARNING = 10.0  # percent of CPU busy before the run above which the summary warns of noise

T = TypeVar("T")


def rotation(names: Sequence[T], round_index: int) -> list[T]:
    """The order of one round: ``names`` rotated left by the round's index, so each server takes each place in turn."""
    shift = round_index % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (the lower middle one for an even count), with every run's req/s and errors."""
    ranked = sorted(runs, key=lambda run: run["requests_per_s"])
    chosen = ranked[(len(ranked) - 1) // 2]
    return {
        **chosen,
        "runs_requests_per_s": [run["requests_per_s"] for run in runs],
        "errors_all_runs": sum(run["errors"] for run in runs),
    }


def level(report: Report, server: str, connections: int) -> dict[str, Any] | None:
    """A server's (median) results at one connections level, if it was measured."""
    loads = report["servers"].get(server, {}).get("load", [])
    return next((load for load in loads if load["connections"] == connections), None)


def round_ratios(runs: Sequence[float], ceiling_runs: Sequence[float]) -> list[float]:
    """Each round's req/s over the ceiling's in the same round (both in round order), leaving out a ceiling run of 0."""
    return [mine / ceiling for mine, ceiling in zip(runs, ceiling_runs, strict=True) if ceiling]


def ceiling_ratios(report: Report, server: str, connections: int) -> list[float] | None:
    """A server's ratios to the ceiling round by round at one connections level, if both ran the same rounds."""
    mine, ceiling = level(report, server, connections), level(report, REFERENCE, connections)
    if not mine or not ceiling or len(mine["runs_requests_per_s"]) != len(ceiling["runs_requests_per_s"]):
        return None
    return round_ratios(mine["runs_requests_per_s"], ceiling["runs_requests_per_s"])


def ceiling_ratio(report: Report, server: str, connections: int) -> float | None:
    """The 'x ceiling' figure: the median of a server's per-round ratios to the ceiling (the mean of the middle two if even)."""
    ratios = ceiling_ratios(report, server, connections)
    return statistics.median(ratios) if ratios else None


def p99(report: Report, server: str, connections: int) -> float | None:
    """A server's p99 latency in ms at one connections level."""
    found = level(report, server, connections)
    return found["p99_ms"] if found else None


def batch_ratio(report: Report, server: str) -> float | None:
    """A server's end-to-end batch phrases/s over the in-process rate of NLPModel.predict_texts."""
    batch, in_process = report["servers"][server].get("batch"), report.get("in_process_batch")
    return batch["phrases_per_s"] / in_process["phrases_per_s"] if batch and in_process else None


def pss(report: Report, server: str, workers: int) -> float | None:
    """Total PSS in MB of a server's process tree with ``workers`` workers."""
    found = report["servers"][server].get("memory", {}).get(str(workers))
    return found["total_mb"] if found else None


@dataclass(frozen=True)
class Target:
    """A goal from the performance issue: a measure of one server, a limit, and which side of it meets the goal."""

    label: str
    measure: Callable[[Report, str], float | None]
    limit: float
    at_most: bool  # True: the value must not exceed the limit; False: it must reach it
    unit: str


TARGETS = (
    Target("req/s at 16 connections >= 0.40x ceiling", lambda r, s: ceiling_ratio(r, s, 16), 0.40, False, "x"),
    Target("req/s at 64 connections >= 0.40x ceiling", lambda r, s: ceiling_ratio(r, s, 64), 0.40, False, "x"),
    Target("p99 at 16 connections <= 10 ms", lambda r, s: p99(r, s, 16), 10.0, True, " ms"),
    Target("p99 at 64 connections <= 25 ms", lambda r, s: p99(r, s, 64), 25.0, True, " ms"),
    Target("batch end to end >= 0.5x in-process", batch_ratio, 0.5, False, "x"),
    Target("total PSS with 2 workers <= 300 MB", lambda r, s: pss(r, s, 2), 300.0, True, " MB"),
)


def verdict(target: Target, value: float | None) -> str:
    """'met', 'not met', or 'n/a' when the run did not measure it."""
    if value is None:
        return "n/a"
    return "met" if (value <= target.limit if target.at_most else value >= target.limit) else "not met"


def candidates(report: Report) -> list[str]:
    """The servers measured, but the reference."""
    return [name for name in report["servers"] if name != REFERENCE]


def target_results(report: Report) -> list[dict[str, Any]]:
    """Each target's value and verdict for every candidate, as the JSON report keeps them."""
    results = []
    for target in TARGETS:
        values = {server: target.measure(report, server) for server in candidates(report)}
        shown = {server: None if value is None else round(value, 2) for server, value in values.items()}
        verdicts = {server: verdict(target, value) for server, value in values.items()}
        results.append({"target": target.label, "values": shown, "verdicts": verdicts})
    return results


def uneven(spread: list[int]) -> bool:
    """Say whether one worker holds over three quarters of at least one connection per worker (sync ones hold few)."""
    return len(spread) > 1 and sum(spread) >= len(spread) and max(spread) > 0.75 * sum(spread)


def number(value: float | None, digits: int = 2) -> str:
    """A value for a table cell, '-' when there is none."""
    return "-" if value is None else f"{value:,.{digits}f}"


def header_lines(report: Report) -> list[str]:
    """Machine, tools, load settings, each server's command, and the in-process batch rate."""
    env, settings, in_process = report["environment"], report["settings"], report.get("in_process_batch")
    busy = env["cpu_busy_before_percent"]
    noisy = ": other processes compete, numbers are noisy" if busy > BUSY_WARNING else ""
    width = max(len(name) for name in report["servers"])
    lines = [
        f"machine: {env['cpus']} cpus ({busy}% busy before the run{noisy}), wrk on the same cpus; "
        f"{env['granian']}; {env['wrk']}; python {env['python']}",
        f"load: wrk -t1, {runs_text(settings)}, GET /?query=<one of {settings['distinct_phrases']} test.tsv sentences>; "
        f"{settings['workers']} workers each, access log {'on' if settings['access_log'] else 'off'}",
        *(f"  {name:<{width}}  {info['command']}  [{info['worker_class']}]" for name, info in report["servers"].items()),
    ]
    if in_process:
        lines.append(
            f"in process: NLPModel.predict_texts on the same {in_process['batch_size']} sentences, one thread: "
            f"{in_process['phrases_per_s']:,.0f} phrases/s ({in_process['mean_batch_ms']} ms per batch)"
        )
    return lines


def runs_text(settings: dict[str, Any]) -> str:
    """How the load runs were laid out: interleaved rounds, or (in reports from before them) one server after another."""
    warmup, repeat, duration = settings["warmup_s"], settings["repeat"], settings["duration_s"]
    if not settings.get("interleaved"):
        return f"{warmup} s warm-up then {repeat} x {duration} s per level (median run shown)"
    return (
        f"runs interleaved: every server up at once, {repeat} rounds per level, each running every server once in an "
        f"order rotating by one place per round, {warmup} s warm-up before each {duration} s run (median run shown)"
    )


def grid(table: list[list[str]], left: int = 1) -> list[str]:
    """Lay rows of cells out in columns, the first ``left`` flush left and the rest flush right, a rule under the header."""
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    lines = [
        "  ".join(
            text.ljust(width) if column < left else text.rjust(width)
            for column, (text, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def load_table(report: Report) -> list[str]:
    """Each server at each connections level: the median run, errors over all runs, and req/s against the ceiling."""
    columns = ["server", "conns", "req/s", "p50 ms", "p99 ms", "errors", "x ceiling", "req/s of each run"]
    table = [[*columns, "x ceiling of each run", "conns per worker"]]
    for name, info in report["servers"].items():
        for load in info["load"]:
            ratios = ceiling_ratios(report, name, load["connections"])
            table.append(
                [
                    name,
                    str(load["connections"]),
                    number(load["requests_per_s"], 0),
                    number(load["p50_ms"]),
                    number(load["p99_ms"]),
                    str(load["errors_all_runs"]),
                    number(ceiling_ratio(report, name, load["connections"])),
                    "/".join(f"{rate:,.0f}" for rate in load["runs_requests_per_s"]),
                    "-" if ratios is None else "/".join(f"{ratio:.2f}" for ratio in ratios),
                    "/".join(map(str, load["connections_per_worker"])),
                ]
            )
    rows = [
        *grid(table),
        "errors: socket errors and non-2xx answers summed over every run of the level, not only the median one",
        "x ceiling: the median over the runs of req/s divided by the ceiling's req/s in the same round (run r with run r)",
    ]
    if any(uneven(load["connections_per_worker"]) for info in report["servers"].values() for load in info["load"]):
        rows.append(
            "note: uneven connections per worker: a worker that keeps every keep-alive connection it accepts can hold"
            " most of them while another core idles; req/s then varies from run to run."
        )
    return rows


def summary_table(report: Report) -> list[str]:
    """One row per server: req/s against the ceiling per level, p99s, batch rates, and total PSS per worker count."""
    levels, counts = report["settings"]["connections"], report["settings"]["memory_workers"]
    table = [
        [
            "server",
            *(f"x ceiling @{c}" for c in levels),
            *(f"p99 ms @{c}" for c in levels),
            "batch phrases/s",
            "x in-process",
            *(f"PSS MB {n} workers" for n in counts),
        ]
    ]
    for name, info in report["servers"].items():
        batch = info.get("batch")
        table.append(
            [
                name,
                *(number(ceiling_ratio(report, name, c)) for c in levels),
                *(number(p99(report, name, c)) for c in levels),
                number(batch["phrases_per_s"] if batch else None, 0),
                number(batch_ratio(report, name)),
                *(number(pss(report, name, n), 1) for n in counts),
            ]
        )
    return grid(table)


def batch_lines(report: Report) -> list[str]:
    """The batch run of each server that had one."""
    lines = []
    for name, info in report["servers"].items():
        batch = info.get("batch")
        if batch:
            lines.append(
                f"batch {name}: POST / with {batch['batch_size']} queries, {batch['clients']} clients: "
                f"{batch['phrases_per_s']:,.0f} phrases/s end to end, {batch['mean_batch_ms']} ms mean per batch "
                f"({batch['batches']} batches in {batch['wall_s']} s, {batch['failed_batches']} failed)"
            )
    return lines


def targets_table(report: Report) -> list[str]:
    """Each target against each candidate: met or not met, with the value measured."""
    servers, results = candidates(report), target_results(report)
    if not servers:
        return ["targets: no candidate server was measured"]
    units = {target.label: target.unit for target in TARGETS}
    table = [["target", *servers]] + [
        [result["target"], *(cell(result["verdicts"][s], result["values"][s], units[result["target"]]) for s in servers)]
        for result in results
    ]
    winners = [s for s in servers if all(result["verdicts"][s] == "met" for result in results)]
    return [*grid(table, left=len(table[0])), f"every target met by: {', '.join(winners) or 'none'}"]


def cell(verdict_text: str, value: float | None, unit: str) -> str:
    """A targets-table cell: the verdict and, if measured, the value."""
    return verdict_text if value is None else f"{verdict_text} ({value:,.2f}{unit})"


def render(report: Report) -> str:
    """Lay the report out for a terminal: header, load table, per-server summary, batches, and the targets."""
    sections = (header_lines, load_table, summary_table, batch_lines, targets_table)
    return "\n\n".join("\n".join(lines) for lines in (section(report) for section in sections) if lines)
