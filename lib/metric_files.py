"""The metrics folder: each process's Prometheus files, written so that a full or read-only folder fails no request.

In multi-process mode prometheus-client keeps each process's values in files of its own, mapped into memory
(``mmap_dict.MmapedDict``), through the value class it picks at import (``values.ValueClass``). Two things there take
the service down when the folder cannot be written:

- a file is sized with ``truncate``, which on a full tmpfs succeeds (the file is sparse); the first write to one of
  its pages then finds no memory behind it and the kernel sends SIGBUS, which kills the worker with no line logged;
- a file that cannot be opened (a read-only folder) raises out of ``inc`` into the request, and after a fork the
  process's other values are left on closed files, so every later update fails too.

Here each file's space is allocated before it is mapped (``posix_fallocate`` fails with ENOSPC where the write would
fault), files are opened on a series' first update rather than at each fork, and a series whose file cannot be written
keeps its value in the process's memory. The first failure is logged once for the whole server, and every failure is
counted (``/metrics``, ``/ready``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import values
from prometheus_client.mmap_dict import _INITIAL_MMAP_SIZE, MmapedDict, mmap_key

log = logging.getLogger(__name__)
getpid = os.getpid

#: Counts of exited workers, one file per kind: counter_exited.db, histogram_exited.db.
EXITED = "exited"
FOLDED_KINDS = ("counter", "histogram")
LOCK = ".lock"
MESSAGE_BYTES = 400


class AllocatedMmapedDict(MmapedDict):
    """prometheus-client's file of values, with every byte of it allocated before it is mapped or written.

    The library sizes the file with ``truncate`` (sparse: no space is taken) and then writes through the mapping; on a
    full file system that write is a SIGBUS. Allocating first turns it into an OSError (ENOSPC) here, before anything
    is mapped or changed. The version is pinned, and tests/test_metrics_faults.py holds this to the library's layout.
    """

    def __init__(self, filename: str) -> None:
        allocate(Path(filename), _INITIAL_MMAP_SIZE)
        super().__init__(filename)

    def _init_value(self, key: str) -> None:
        """Add a key, allocating the larger file first if it has to grow (the library doubles it until the entry fits)."""
        encoded = len(key.encode("utf-8"))
        entry = 4 + encoded + (8 - (encoded + 4) % 8) + 16  # length, key padded to 8 bytes, value and timestamp
        capacity = self._capacity
        while self._used + entry > capacity:
            capacity *= 2
        if capacity > self._capacity:
            os.posix_fallocate(self._f.fileno(), 0, capacity)
        super()._init_value(key)


def allocate(path: Path, size: int) -> None:
    """Make sure ``path`` exists with all of at least ``size`` bytes allocated; raise OSError if the space is not there.

    A new file is allocated under another name and renamed into place, so no reader ever finds it empty.
    """
    with contextlib.suppress(FileNotFoundError):
        descriptor = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(descriptor, 0, max(size, os.fstat(descriptor).st_size))
        finally:
            os.close(descriptor)
        return
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(descriptor, 0, size)
        os.rename(staging, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise
    finally:
        os.close(descriptor)


def describe(exc: OSError) -> str:
    """An OSError as one line with its number and symbol: ``[Errno 28] No space left on device (ENOSPC)``."""
    number = exc.errno or 0
    return f"[Errno {number}] {exc.strerror or os.strerror(number)} ({errno.errorcode.get(number, '?')})"


class StorageFaults:
    """Failed writes to the metrics folder, counted across every process of the server, the first one logged once.

    Made in the server's parent before the workers fork, so all of them share it. The counts are POSIX semaphores:
    their updates are atomic and never wait, so no process can leave the others blocked, whatever stops it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._failures = multiprocessing.Semaphore(0)
        self._unlogged = multiprocessing.Semaphore(1)
        self._first = multiprocessing.Array("c", MESSAGE_BYTES, lock=False)  # written once, by the process that logs

    def record(self, exc: OSError, doing: str) -> None:
        """Count one failed write; the first in the server's life is logged, naming the folder and the error."""
        if self._unlogged.acquire(block=False):
            error = describe(exc)
            self._first.value = f"{doing}: {error}".encode()[: MESSAGE_BYTES - 1]
            log.error(
                "metrics folder %s: %s failed: %s. Requests are answered as usual; values that cannot be written "
                "there stay in their worker's memory and are missing from /metrics (see /ready) until the folder is "
                "writable again and the workers are replaced (SIGHUP) or the server restarts.",
                self.folder,
                doing,
                error,
            )
        self._failures.release()

    @property
    def failures(self) -> int:
        """How many writes to the folder have failed, in every process of the server."""
        return int(self._failures.get_value())

    def degradation(self) -> dict[str, Any] | None:
        """What /ready says about the folder: None while every write succeeded."""
        failures = self.failures
        if not failures:
            return None
        return {"folder": str(self.folder), "error": self._first.value.decode(errors="replace"), "failed_writes": failures}


class ProcessFiles:
    """This process's open files in the folder, one per kind of value; a forked process starts with none."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pid = os.getpid()
        self.files: dict[str, MmapedDict] = {}

    def get(self, prefix: str) -> MmapedDict:
        """The file for ``prefix`` (``counter``, ``gauge_max``...) of this process, opened (and made) if need be."""
        if self.pid != os.getpid():
            self.close()  # the parent's mappings, in this process only
            self.pid = os.getpid()
        file = self.files.get(prefix)
        if file is None:
            file = self.files[prefix] = AllocatedMmapedDict(str(self.folder / f"{prefix}_{self.pid}.db"))
        return file

    def close(self) -> None:
        """Close every file this process has open (its values then start again from what the files hold)."""
        for file in self.files.values():
            file.close()
        self.files = {}


def folder_value_class(folder: Path, faults: StorageFaults) -> type:
    """A value class for prometheus-client that stores values in ``folder`` as its own multi-process class does.

    The files and keys are the library's, so ``MultiProcessCollector`` reads them unchanged. Unlike the library's class,
    a value opens its file at its first update in a process (a worker makes no file for the gauges only its parent
    sets), and a value whose file cannot be written keeps counting in memory, after one failure is recorded.
    """
    lock = threading.Lock()  # one per process, as in the library: each worker runs one Python thread at a time
    files = ProcessFiles(folder)

    class FolderValue:
        """A float kept in this process's file in the metrics folder, or in memory when the file cannot be written."""

        _multiprocess = True

        def __init__(
            self,
            typ: str,
            metric_name: str,
            name: str,
            labelnames: Any,
            labelvalues: Any,
            help_text: str,
            multiprocess_mode: str = "",
            **kwargs: Any,
        ) -> None:
            self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
            self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
            self._pid = os.getpid()
            self._value = 0.0
            self._file: MmapedDict | None = None
            self._in_memory = False  # its file could not be written in this process

        def _own(self) -> None:
            """Start from zero in a forked process: its values go to files of its own. The caller holds the lock."""
            if self._pid != getpid():
                self._pid, self._value, self._file, self._in_memory = getpid(), 0.0, None, False

        def _bind(self) -> None:
            """Find this value's place in this process's file, or record why it has none. The caller holds the lock."""
            self._own()
            if self._file is not None or self._in_memory:
                return
            try:
                file = files.get(self._prefix)
                self._value = file.read_value(self._key)[0]  # adds the key, growing the file if it must
            except OSError as exc:
                self._in_memory = True
                faults.record(exc, f"writing {self._prefix} values")
                return
            self._file = file

        def inc(self, amount: float) -> None:
            with lock:
                if self._file is None or self._pid != getpid():  # one test on the path every request takes
                    self._bind()
                self._value += amount
                if self._file is not None:
                    self._file.write_value(self._key, self._value, 0.0)

        def set(self, value: float, timestamp: float | None = None) -> None:
            with lock:
                if self._file is None or self._pid != getpid():
                    self._bind()
                self._value = value
                if self._file is not None:
                    self._file.write_value(self._key, self._value, timestamp or 0.0)

        def set_exemplar(self, exemplar: Any) -> None:
            """Exemplars are not kept in multi-process mode (as in the library)."""

        def get(self) -> float:
            with lock:
                self._own()
                return self._value

        def get_exemplar(self) -> None:
            return None

    FolderValue.faults = faults  # type: ignore[attr-defined]
    FolderValue.files = files  # type: ignore[attr-defined]
    return FolderValue


def install(folder: Path) -> StorageFaults | None:
    """Store prometheus-client's values through ``folder_value_class`` if it chose multi-process mode; its faults.

    The library chooses at import, from ``PROMETHEUS_MULTIPROC_DIR``; metrics read ``values.ValueClass`` as each series
    is made, so this must run before the first series exists. Without multi-process mode, values live in memory and
    nothing changes.
    """
    current = values.ValueClass
    faults: StorageFaults | None = getattr(current, "faults", None)
    if faults is not None and faults.folder == folder:
        return faults
    if not getattr(current, "_multiprocess", False):
        return None
    faults = StorageFaults(folder)
    values.ValueClass = folder_value_class(folder, faults)
    return faults


@contextlib.contextmanager
def locked(folder: Path, faults: StorageFaults | None) -> Iterator[bool]:
    """Hold the folder's lock, shared by every process of the server; yield whether it is held.

    It is not when the lock file cannot be made (a read-only folder that never had one): nobody can fold there anyway.
    """
    try:
        # O_CREAT without write access: an existing lock file opens even once the folder is read-only.
        descriptor = os.open(folder / LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        if faults is not None:
            faults.record(exc, f"opening {LOCK}")
        yield False
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(descriptor)


def fold_exited_processes(folder: Path, faults: StorageFaults | None = None) -> int:
    """Fold the files of processes that have exited into one file per kind, drop their gauges; return how many went.

    Every worker writes its own counter and histogram files, and a worker that exits (reload, a crash, a kill) leaves
    them behind. Deleting them would make the totals fall, which Prometheus reads as a counter reset; folding them keeps
    the totals and bounds the folder by the live workers. An exited process's gauges are deleted: they say what was
    true while it ran, and the merged ``max`` would keep a replaced model version at 1 through them. A file that cannot
    be folded or deleted (a full or read-only folder) stays where it is, read as before. The caller holds the lock.
    """
    done = 0
    for path in sorted(folder.glob("*_*.db")):
        kind, _, rest = path.stem.partition("_")
        pid = rest.rpartition("_")[2]  # counter_<pid>, gauge_max_<pid>
        if kind not in (*FOLDED_KINDS, "gauge") or not pid.isdigit() or process_alive(int(pid)):
            continue
        try:
            if kind == "gauge":
                path.unlink()
            else:
                fold_into(folder / f"{kind}_{EXITED}.db", path)
        except OSError as exc:
            if faults is not None:
                faults.record(exc, f"folding {path.name}")
            continue
        done += 1
    return done


def fold_into(target: Path, source: Path) -> None:
    """Add ``source``'s values into ``target`` and delete ``source``; on any failure, ``target`` is left as it was."""
    merged = AllocatedMmapedDict(str(target))
    before: list[tuple[str, float, float]] = []
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(source)):
            total, latest = merged.read_value(key)
            before.append((key, total, latest))
            merged.write_value(key, total + value, max(latest, timestamp))
        source.unlink()
    except OSError:
        for key, total, latest in reversed(before):
            merged.write_value(key, total, latest)  # places already allocated: these writes cannot fail
        raise
    finally:
        merged.close()


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a signal 0 tests without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
