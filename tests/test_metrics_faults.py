"""A full or read-only metrics folder (lib/metric_files.py): every request is still answered, and the fault is named once.

The faults are real: a 1 MB tmpfs filled with dd, and a read-only bind mount (root ignores permission bits). Where
mounting is not allowed the tests skip, saying why; each first checks that writing into the folder really fails.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess, values
from prometheus_client.mmap_dict import MmapedDict

from app import create_app
from lib.metric_files import AllocatedMmapedDict, StorageFaults, fold_exited_processes, folder_value_class
from tests.helpers import Traffic
from tests.support.harness import ROOT, Server, live_descendants, production_command, serving, wait_for_workers
from tests.test_observability import merged_total, write_counter
from tests.test_openapi import assert_conforms

FOLDER_LOGGER = "lib.metric_files"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a mount command, returning its result whatever it was."""
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def mount_or_skip(*command: str) -> None:
    """Mount, or skip the test with the reason the system gave."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small or read-only folder needs root")
    result = run(*command)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(command)}): {result.stderr.strip()}")


def unmount(folder: Path) -> None:
    """Unmount, lazily if something still holds the folder open."""
    if run("umount", str(folder)).returncode != 0:
        run("umount", "-l", str(folder))


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An empty 1 MB tmpfs, unmounted afterwards."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    mount_or_skip("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        unmount(folder)


@pytest.fixture
def writable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder that ``make_read_only`` may turn read-only; always writable again afterwards."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    yield folder
    if folder in mounted_here():  # os.path.ismount misses a bind mount of a folder onto itself
        unmount(folder)


def mounted_here() -> set[Path]:
    """Every mount point, from the kernel's table."""
    return {Path(line.split()[4]) for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def fill(folder: Path) -> None:
    """Fill the file system under ``folder`` with dd, and check that allocating more space really fails."""
    run("dd", "if=/dev/zero", f"of={folder / 'filler'}", "bs=64k")
    assert_write_fails(folder, errno.ENOSPC)


def make_read_only(folder: Path) -> None:
    """Bind-mount the folder read-only over itself (files already open keep their write access)."""
    mount_or_skip("mount", "--bind", str(folder), str(folder))
    if run("mount", "-o", "remount,bind,ro", str(folder)).returncode != 0:
        unmount(folder)
        pytest.skip("cannot remount a bind mount read-only here")
    assert_write_fails(folder, errno.EROFS)


def assert_write_fails(folder: Path, expected: int) -> None:
    """The fault is real: a new file there cannot be given a page."""
    probe = folder / "probe"
    with pytest.raises(OSError) as failed:
        descriptor = os.open(probe, os.O_RDWR | os.O_CREAT)
        try:
            os.posix_fallocate(descriptor, 0, 4096)
        finally:
            os.close(descriptor)
            probe.unlink()
    assert failed.value.errno == expected


# --- the cause: the library's file on a full tmpfs ------------------------------------------------------------------

PROBE = "from {module} import {cls}; d = {cls}({path!r}); [d.write_value(str(i) * 40, 1.0, 0.0) for i in range(2000)]"


def probe(cls: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Open a values file in a child process and add keys past its first 64 KiB: how it ends."""
    module = "lib.metric_files" if cls == "AllocatedMmapedDict" else "prometheus_client.mmap_dict"
    code = PROBE.format(module=module, cls=cls, path=str(path))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_library_file_on_a_full_tmpfs_is_a_sigbus_ours_an_oserror(small_tmpfs: Path) -> None:
    fill(small_tmpfs)
    assert probe("MmapedDict", small_tmpfs / "counter_1.db").returncode == -signal.SIGBUS  # the fault the workers died of
    (small_tmpfs / "counter_1.db").unlink()
    ours = probe("AllocatedMmapedDict", small_tmpfs / "counter_2.db")
    assert ours.returncode == 1 and "OSError: [Errno 28] No space left on device" in ours.stderr
    assert {path.name for path in small_tmpfs.iterdir()} == {"filler"}, "no empty or half-made file is left behind"


def test_growing_a_file_on_a_full_tmpfs_is_an_oserror(small_tmpfs: Path) -> None:
    values_file = AllocatedMmapedDict(str(small_tmpfs / "counter_1.db"))
    key = 0
    while values_file._used + 200 < values_file._capacity:  # fill the first 64 KiB, allocated when made
        values_file.write_value(f"{key:0100d}", float(key), 0.0)
        key += 1
    fill(small_tmpfs)
    with pytest.raises(OSError) as failed:
        for more in range(key, key + 10):
            values_file.write_value(f"{more:0100d}", 1.0, 0.0)
    assert failed.value.errno == errno.ENOSPC
    values_file.write_value(f"{0:0100d}", 7.0, 0.0)  # keys already there still take writes
    values_file.close()
    stored = {k: v for k, v, _, _ in MmapedDict.read_all_values_from_file(str(small_tmpfs / "counter_1.db"))}
    assert len(stored) == key and stored[f"{0:0100d}"] == 7.0


def test_allocated_file_has_the_library_layout(tmp_path: Path) -> None:
    ours, theirs = AllocatedMmapedDict(str(tmp_path / "ours.db")), MmapedDict(str(tmp_path / "theirs.db"))
    for values_file in (ours, theirs):
        for key in range(1200):  # past 64 KiB: the file doubles
            values_file.write_value(f"key-{key}" * 5, key / 2, 1.5)
        values_file.close()
    assert (tmp_path / "ours.db").read_bytes() == (tmp_path / "theirs.db").read_bytes()
    stat = (tmp_path / "ours.db").stat()
    assert stat.st_size == 2 * 65536 and stat.st_blocks * 512 >= stat.st_size  # every byte allocated


# --- values: in memory when their file cannot be written, the fault logged once ------------------------------------


@pytest.fixture
def folder_values(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make new series use ``folder_value_class`` for a folder given later; restore the library's class after."""

    def use(folder: Path) -> StorageFaults:
        faults = StorageFaults(folder)
        monkeypatch.setattr(values, "ValueClass", folder_value_class(folder, faults))
        return faults

    yield use
    values.ValueClass.files.close()


@pytest.fixture
def multiprocess_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The library's value class as PROMETHEUS_MULTIPROC_DIR makes it at import, for an app to replace."""
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    yield
    values.ValueClass.files.close()


def test_series_whose_file_cannot_be_made_count_in_memory_and_are_logged_once(
    small_tmpfs: Path, folder_values: Any, caplog: pytest.LogCaptureFixture
) -> None:
    faults = folder_values(small_tmpfs)
    registry = CollectorRegistry()
    stored = Counter("stored", "A counter made before the folder filled.", ["x"], registry=registry)
    stored.labels("a").inc(2)
    fill(small_tmpfs)
    late = Gauge("late", "A gauge whose file comes after.", ["x"], multiprocess_mode="max", registry=registry)
    with caplog.at_level(logging.ERROR, logger=FOLDER_LOGGER):
        late.labels("a").set(3)
        late.labels("b").set(4)
        stored.labels("a").inc()  # its file is there, allocated: still written
        stored.labels("b").inc(5)  # a new key in that file's allocated space: written too
    assert late.labels("a")._value.get() == 3 and late.labels("b")._value.get() == 4  # kept in memory
    assert faults.failures == 2
    [line] = [record.getMessage() for record in caplog.records if record.name == FOLDER_LOGGER]
    assert str(small_tmpfs) in line and "[Errno 28] No space left on device (ENOSPC)" in line
    [counter_file] = small_tmpfs.glob("counter_*.db")
    assert sorted(value for _, value, _, _ in MmapedDict.read_all_values_from_file(str(counter_file))) == [3.0, 5.0]
    assert faults.degradation() == {
        "folder": str(small_tmpfs),
        "error": "writing gauge_max values: [Errno 28] No space left on device (ENOSPC)",
        "failed_writes": 2,
    }


def test_read_only_folder_keeps_new_series_in_memory(writable_folder: Path, folder_values: Any) -> None:
    faults = folder_values(writable_folder)
    registry = CollectorRegistry()
    requests_total = Counter("requests", "Requests.", ["x"], registry=registry)
    requests_total.labels("before").inc()
    make_read_only(writable_folder)
    requests_total.labels("before").inc()  # the open file keeps its write access
    requests_total.labels("after").inc(3)  # same file, space already allocated
    Counter("other", "Other.", ["x"], registry=registry).labels("x").inc()  # fine
    gauge = Gauge("g", "A gauge.", ["x"], multiprocess_mode="max", registry=registry)
    gauge.labels("x").set(1)  # a new file: refused
    assert gauge.labels("x")._value.get() == 1 and faults.failures == 1
    assert "[Errno 30] Read-only file system (EROFS)" in faults.degradation()["error"]


def test_forked_process_starts_from_zero_in_files_of_its_own(tmp_path: Path, folder_values: Any) -> None:
    folder_values(tmp_path)
    counter = Counter("forked", "Counts.", ["x"], registry=CollectorRegistry()).labels("x")
    counter.inc(5)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's exit status is the assertion
        counter.inc()
        os._exit(0 if counter._value.get() == 1 else 1)
    assert os.waitpid(child, 0)[1] == 0
    assert counter._value.get() == 5
    assert merged_total_of(tmp_path, "forked_total") == 6
    assert {path.name for path in tmp_path.glob("*.db")} == {f"counter_{os.getpid()}.db", f"counter_{child}.db"}


def merged_total_of(folder: Path, sample: str) -> float:
    """A sample's total across every file in the folder, as /metrics merges them."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(sample + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- the app over a full folder, in process ---------------------------------------------------------------------------


def test_app_over_a_full_folder_answers_and_says_so(
    tiny_models: Path, small_tmpfs: Path, multiprocess_mode: None, caplog: pytest.LogCaptureFixture
) -> None:
    fill(small_tmpfs)
    with caplog.at_level(logging.ERROR, logger=FOLDER_LOGGER):
        client = create_app({"MODELS_DIR": str(tiny_models), "PROMETHEUS_MULTIPROC_DIR": str(small_tmpfs)}).test_client()
        answers = [client.get("/?query=a fine film"), client.post("/ratings", json={"queries": ["dull", "good"]})]
        health, ready, metrics = client.get("/health"), client.get("/ready"), client.get("/metrics")
    assert [answer.status_code for answer in answers] == [200, 200] and health.status_code == 200
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    degraded = ready.json["degraded"]["metrics"]
    assert degraded["folder"] == str(small_tmpfs) and "ENOSPC" in degraded["error"] and degraded["failed_writes"] >= 3
    assert_conforms(client.get("/openapi.json").get_json(), "/ready", "get", ready)
    assert metrics.status_code == 200
    failures = [line for line in metrics.get_data(as_text=True).splitlines() if line.startswith("metrics_write_failures_total ")]
    assert failures and float(failures[0].split()[1]) >= 3
    [line] = [record.getMessage() for record in caplog.records if record.name == FOLDER_LOGGER]
    assert str(small_tmpfs) in line and "[Errno 28]" in line


# --- folding exited workers' files ------------------------------------------------------------------------------------


def test_exited_processes_gauges_are_dropped_live_ones_kept(tmp_path: Path) -> None:
    dead, live = 999_999_991, os.getpid()
    for pid in (dead, live):
        gauge = MmapedDict(str(tmp_path / f"gauge_max_{pid}.db"))
        gauge.write_value('["model_build_info", "model_build_info", {"version": "v1"}, "h"]', float(pid == live), 0.0)
        gauge.close()
    assert fold_exited_processes(tmp_path) == 1
    assert {path.name for path in tmp_path.glob("*.db")} == {f"gauge_max_{live}.db"}


def test_folding_into_a_full_folder_changes_nothing(small_tmpfs: Path) -> None:
    write_counter(small_tmpfs / "counter_999999991.db", 3)
    write_counter(small_tmpfs / f"counter_{os.getpid()}.db", 5)
    fill(small_tmpfs)
    faults = StorageFaults(small_tmpfs)
    assert fold_exited_processes(small_tmpfs, faults) == 0 and faults.failures == 1
    assert (small_tmpfs / "counter_999999991.db").exists() and not (small_tmpfs / "counter_exited.db").exists()
    assert merged_total(small_tmpfs) == 8


def test_folding_in_a_read_only_folder_changes_nothing(writable_folder: Path) -> None:
    write_counter(writable_folder / "counter_999999991.db", 3)
    write_counter(writable_folder / "counter_exited.db", 4)
    make_read_only(writable_folder)
    faults = StorageFaults(writable_folder)
    assert fold_exited_processes(writable_folder, faults) == 0 and faults.failures == 1
    assert merged_total(writable_folder) == 7


# --- live servers: two workers, a burst of traffic, a reload ----------------------------------------------------------

BURST_SECONDS = 2.0


def burst(server: Server) -> Traffic:
    """Clients calling without pause for a moment, plus requests that make new series (other routes and statuses)."""
    traffic = Traffic(server.url, clients=2)
    traffic.start()
    try:
        for _ in range(3):
            headers = {"Connection": "close"}  # new connections: both workers take some
            assert requests.get(f"{server.url}/ratings", {"query": "dull"}, headers=headers, timeout=10).status_code == 200
            batch = requests.post(f"{server.url}/ratings", json={"queries": ["dull", "fine"]}, headers=headers, timeout=10)
            assert batch.status_code == 200
            assert requests.get(f"{server.url}/nowhere", headers=headers, timeout=10).status_code == 404
        time.sleep(BURST_SECONDS)
    finally:
        traffic.stop()
    return traffic


def reload_workers(server: Server) -> None:
    """SIGHUP, then wait until every worker has been replaced."""
    before = set(live_descendants(server.process.pid))
    os.kill(server.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while set(live_descendants(server.process.pid)) & before or len(live_descendants(server.process.pid)) < len(before):
        assert time.monotonic() < deadline, "the workers were not replaced"
        time.sleep(0.2)


def check_degraded_but_serving(server: Server, folder: Path, symbol: str) -> None:
    """Every request answered, /health and /ready 200 naming the fault, one log line naming the folder and errno."""
    for _ in range(4):  # new connections: both workers answer
        health = requests.get(f"{server.url}/health", headers={"Connection": "close"}, timeout=10)
        ready = requests.get(f"{server.url}/ready", headers={"Connection": "close"}, timeout=10)
        assert health.status_code == 200 and ready.status_code == 200 and ready.json()["status"] == "ready"
        degraded = ready.json()["degraded"]["metrics"]
        assert degraded["folder"] == str(folder) and f"({symbol})" in degraded["error"]
    metrics = requests.get(f"{server.url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "metrics_write_failures_total" in metrics.text
    server.check_alive()
    lines = [json.loads(line) for line in server.stderr.read_text().splitlines() if line.startswith("{")]
    named = [line for line in lines if str(folder) in line["message"] and f"({symbol})" in line["message"]]
    assert len(named) == 1 and named[0]["level"] == "ERROR", named
    assert not any("Traceback" in line["message"] or "crash" in line["message"].lower() for line in lines)


def serves_through_a_fault(folder: Path, make_fault: Callable[[Path], object], symbol: str, tmp_path: Path) -> None:
    """A production server whose metrics folder meets ``make_fault`` after start answers every request, before and
    after its workers are replaced, and says it is degraded."""
    env = {"WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(folder), "ACCESS_LOG": ""}
    with serving(production_command(), env, tmp_path / "logs") as server:
        wait_for_workers(server, 2)
        make_fault(folder)
        before = burst(server)
        reload_workers(server)  # new workers must make new files: none can be made
        after = burst(server)
        assert before.failures == [] and after.failures == [] and before.answered > 20 and after.answered > 20
        check_degraded_but_serving(server, folder, symbol)


@pytest.mark.slow
def test_full_metrics_folder_fails_no_request(small_tmpfs: Path, tmp_path: Path) -> None:
    serves_through_a_fault(small_tmpfs, fill, "ENOSPC", tmp_path)


@pytest.mark.slow
def test_read_only_metrics_folder_fails_no_request(writable_folder: Path, tmp_path: Path) -> None:
    serves_through_a_fault(writable_folder, make_read_only, "EROFS", tmp_path)
