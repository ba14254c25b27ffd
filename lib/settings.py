"""Service settings: the one place that reads configuration, from environment variables or a mapping.

Everything else receives a ``Settings`` object. A bad value stops the service with one line naming
the key and the value: ``Config 'MAX_BATCH' has value 'lots'. Not a whole number from 1 to 100,000.`` Every number has
a finite range, so no value can turn a limit or a timeout off, or overflow what reads it.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.paths import MODELS_DIR, ROOT

#: Longest URL (path and query string) the service accepts: 414 beyond it (within nginx's usual 8 KB).
MAX_URL_BYTES = 8190

#: Browser pages served from this machine may call the API unless CORS_ORIGINS says otherwise.
LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"

#: Most terms an explanation lists (known ones, and again unknown ones), whatever a request or EXPLAIN_TERMS asks:
#: keeps a batch of explained answers bounded (a 1,000-query batch answers at most 100,000 terms of each kind).
MAX_EXPLAIN_TERMS = 100

#: Ranges of the size limits and cost budgets below: finite, so no setting can turn a limit off by accident.
MAX_QUERY_CHARS_RANGE = (1, 10_000_000)
MAX_BATCH_RANGE = (1, 100_000)
#: A chunked body is read into memory up to this before it is refused: at most 1 GiB.
MAX_BODY_BYTES_RANGE = (1, 2**30)
MAX_REQUEST_CHARS_RANGE = (1, 10_000_000)
MAX_EXPLAIN_TEXTS_RANGE = (1, 10_000)
MAX_EXPLAIN_CHARS_RANGE = (1, 1_000_000)
MAX_EXPLAINED_TERMS_RANGE = (1, 1_000_000)

#: Ranges of the production server's durations, in seconds: finite, so SIGTERM always stops the server in bounded time.
#: granian counts GRACEFUL_TIMEOUT in whole seconds, hence its floor of 1.
CLIENT_TIMEOUT_RANGE = (0.1, 600.0)
DRAIN_SECONDS_RANGE = (0.0, 600.0)
GRACEFUL_TIMEOUT_RANGE = (1.0, 3600.0)
WEB_CONCURRENCY_RANGE = (1, 256)
PORT_RANGE = (1, 65535)

#: Every numeric setting and its range, the service's (Settings) and the production server's (ServerSettings):
#: the README states each, and the tests try values at, around and far beyond each.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "MAX_QUERY_CHARS": MAX_QUERY_CHARS_RANGE,
    "MAX_BATCH": MAX_BATCH_RANGE,
    "MAX_BODY_BYTES": MAX_BODY_BYTES_RANGE,
    "EXPLAIN_TERMS": (1, MAX_EXPLAIN_TERMS),
    "MAX_REQUEST_CHARS": MAX_REQUEST_CHARS_RANGE,
    "MAX_EXPLAIN_TEXTS": MAX_EXPLAIN_TEXTS_RANGE,
    "MAX_EXPLAIN_CHARS": MAX_EXPLAIN_CHARS_RANGE,
    "MAX_EXPLAINED_TERMS": MAX_EXPLAINED_TERMS_RANGE,
    "PORT": PORT_RANGE,
    "WEB_CONCURRENCY": WEB_CONCURRENCY_RANGE,
    "CLIENT_TIMEOUT": CLIENT_TIMEOUT_RANGE,
    "DRAIN_SECONDS": DRAIN_SECONDS_RANGE,
    "GRACEFUL_TIMEOUT": GRACEFUL_TIMEOUT_RANGE,
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SWITCH_VALUES = {"1": True, "true": True, "0": False, "false": False, "": False}


class ConfigError(ValueError):
    """A configuration value cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class Settings:
    """Service configuration, read from environment variables (or a mapping in tests)."""

    models_dir: Path = MODELS_DIR
    max_query_chars: int = 20_000
    max_batch: int = 1_000
    max_body_bytes: int = 2 * 1024 * 1024
    log_level: str = "INFO"
    cors_origins: tuple[str, ...] = (LOCAL_ORIGINS,)
    host: str = "127.0.0.1"  # where `python app.py` listens
    port: int = 5000
    metrics_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR: per-process metric files, merged by /metrics
    access_log: bool = True  # ACCESS_LOG="" turns it off
    log_queries: str = "none"  # what of the URL's query string the access log keeps: none, hmac or text
    query_log_key: bytes = b""  # QUERY_LOG_KEY, the secret for LOG_QUERIES=hmac
    # Addresses or networks (CIDR) of the proxies whose X-Forwarded-For/-Proto/-Host/-Prefix headers are believed, or "*";
    # nobody's by default.
    forwarded_allow_ips: tuple[str, ...] = ()
    explain_terms: int = 10  # EXPLAIN_TERMS: terms an explanation lists unless the request says (1-MAX_EXPLAIN_TERMS)
    # Budgets that bound a request's cost, not only its size, checked before any scoring (sized in bench/worst_case.py):
    max_request_chars: int = 150_000  # MAX_REQUEST_CHARS: characters of all of a request's texts together
    max_explain_texts: int = 100  # MAX_EXPLAIN_TEXTS: texts one request may ask to explain
    max_explain_chars: int = 20_000  # MAX_EXPLAIN_CHARS: characters of all the texts one request asks to explain
    max_explained_terms: int = 2_000  # MAX_EXPLAINED_TERMS: texts explained times explain_terms, what an answer lists
    debug: bool = False  # DEBUG=1: the development server's reloader and debugger (python app.py only; never production)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from upper-case keys (MODELS_DIR, MAX_BATCH, ...); unknown keys are ignored."""
        defaults = cls()
        models_dir = Path(values.get("MODELS_DIR", defaults.models_dir))
        return cls(
            models_dir=models_dir if models_dir.is_absolute() else ROOT / models_dir,
            max_query_chars=budget(values, "MAX_QUERY_CHARS", defaults.max_query_chars, MAX_QUERY_CHARS_RANGE),
            max_batch=budget(values, "MAX_BATCH", defaults.max_batch, MAX_BATCH_RANGE),
            max_body_bytes=budget(values, "MAX_BODY_BYTES", defaults.max_body_bytes, MAX_BODY_BYTES_RANGE),
            log_level=log_level(values, defaults.log_level),
            cors_origins=origins(values, defaults.cors_origins),
            host=host(values, defaults.host),
            port=port(values, defaults.port),
            metrics_dir=writable_folder(values, "PROMETHEUS_MULTIPROC_DIR"),
            access_log=str(values.get("ACCESS_LOG", "-")) != "",
            **query_logging(values),
            forwarded_allow_ips=trusted_proxies(values),
            explain_terms=explain_terms(values, defaults.explain_terms),
            max_request_chars=budget(values, "MAX_REQUEST_CHARS", defaults.max_request_chars, MAX_REQUEST_CHARS_RANGE),
            max_explain_texts=budget(values, "MAX_EXPLAIN_TEXTS", defaults.max_explain_texts, MAX_EXPLAIN_TEXTS_RANGE),
            max_explain_chars=budget(values, "MAX_EXPLAIN_CHARS", defaults.max_explain_chars, MAX_EXPLAIN_CHARS_RANGE),
            max_explained_terms=budget(values, "MAX_EXPLAINED_TERMS", defaults.max_explained_terms, MAX_EXPLAINED_TERMS_RANGE),
            debug=switch(values, "DEBUG"),
        )


@dataclass(frozen=True)
class ServerSettings:
    """How the production server (lib/server.py) runs: where it listens, how many workers, how it stops."""

    host: str = "127.0.0.1"  # HOST as given: an address or a host name
    port: int = 8000
    address: str = "127.0.0.1"  # the IP address HOST names, which granian binds (it takes no host names)
    workers: int = 1  # WEB_CONCURRENCY; by default one per CPU this process may use (see available_cpus)
    client_timeout: float = 5.0  # CLIENT_TIMEOUT: seconds a client may take to send its request headers
    drain_seconds: float = 0.0  # DRAIN_SECONDS: on SIGTERM, /ready answers 503 this long before workers stop
    graceful_timeout: float = 30.0  # GRACEFUL_TIMEOUT: then in-flight requests get this long before a kill

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ServerSettings:
        """Read HOST, PORT, WEB_CONCURRENCY, CLIENT_TIMEOUT, DRAIN_SECONDS and GRACEFUL_TIMEOUT."""
        defaults = cls()
        given = str(values.get("HOST", defaults.host)).strip()  # checked by resolving it once, for ``address``
        low, high = WEB_CONCURRENCY_RANGE
        return cls(
            host=given,
            port=port(values, defaults.port),
            address=host_address(given),
            workers=bounded_int(values, "WEB_CONCURRENCY", available_cpus(), low, high, f"a number of workers ({low}-{high})"),
            client_timeout=seconds(values, "CLIENT_TIMEOUT", defaults.client_timeout, CLIENT_TIMEOUT_RANGE),
            drain_seconds=seconds(values, "DRAIN_SECONDS", defaults.drain_seconds, DRAIN_SECONDS_RANGE),
            graceful_timeout=seconds(values, "GRACEFUL_TIMEOUT", defaults.graceful_timeout, GRACEFUL_TIMEOUT_RANGE),
        )


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota.

    ``os.cpu_count()`` sees the host's cores, not ``--cpus`` or a Kubernetes CPU limit, and would over-fork in a pod.
    """
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU quota in CPUs from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; None when there is none."""
    for folder in (root / _own_cgroup(), root):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 else None


def _own_cgroup() -> str:
    """This process's cgroup v2 path, relative to the cgroup root ("" when unknown or namespaced)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return ""
    return next((line[3:].lstrip("/") for line in lines if line.startswith("0::")), "")


def bounded_int(values: Mapping[str, Any], key: str, default: int, low: int, high: int, expected: str) -> int:
    """Read an integer setting within [low, high], naming the key, the value and what was ``expected`` otherwise."""
    raw = values.get(key, default)
    try:
        number = int(raw) if not isinstance(raw, float) or raw.is_integer() else low - 1
    except (TypeError, ValueError, OverflowError):  # OverflowError: a float infinity
        number = low - 1
    if not low <= number <= high or isinstance(raw, bool):
        raise ConfigError(f"Config {key!r} has value {raw!r}. Not {expected}.")
    return number


def seconds(values: Mapping[str, Any], key: str, default: float, bounds: tuple[float, float]) -> float:
    """Read a duration in seconds within ``bounds`` (infinity and NaN are not numbers here)."""
    low, high = bounds
    raw = values.get(key, default)
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        number = math.nan
    if not low <= number <= high or isinstance(raw, bool):  # NaN compares false: refused
        raise ConfigError(f"Config {key!r} has value {raw!r}. Not a number of seconds from {low:,g} to {high:,g}.")
    return number


def origins(values: Mapping[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    """Read CORS_ORIGINS: comma-separated origins, "*" for any, "" for none."""
    if "CORS_ORIGINS" not in values:
        return default
    found = tuple(origin.strip() for origin in str(values["CORS_ORIGINS"]).split(",") if origin.strip())
    for origin in found:
        if origin == "*":
            continue
        if not origin.startswith(("http://", "https://", "^")):
            raise ConfigError(f"Config 'CORS_ORIGINS' has value {origin!r}. Expected origins like https://app.example.com, or *.")
        try:  # flask-cors compiles an origin with any regular-expression character in it
            re.compile(origin, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"Config 'CORS_ORIGINS' has value {origin!r}. Not a valid regular expression ({exc}).") from None
    return found


def switch(values: Mapping[str, Any], key: str) -> bool:
    """Read an on/off setting: 1 (or true) turns it on; 0, false or nothing leaves it off."""
    raw = str(values.get(key, "")).strip().lower()
    if raw not in SWITCH_VALUES:
        raise ConfigError(f"Config {key!r} has value {raw!r}. Expected 1 or 0.")
    return SWITCH_VALUES[raw]


def log_level(values: Mapping[str, Any], default: str) -> str:
    """Read LOG_LEVEL as one of logging's level names."""
    level = str(values.get("LOG_LEVEL", default)).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"Config 'LOG_LEVEL' has value {level!r}. Expected {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}.")
    return level


def explain_terms(values: Mapping[str, Any], default: int) -> int:
    """Read EXPLAIN_TERMS, how many terms an explanation lists unless the request says: 1 to MAX_EXPLAIN_TERMS."""
    return bounded_int(values, "EXPLAIN_TERMS", default, 1, MAX_EXPLAIN_TERMS, f"a whole number from 1 to {MAX_EXPLAIN_TERMS}")


def budget(values: Mapping[str, Any], key: str, default: int, bounds: tuple[int, int]) -> int:
    """Read a per-request cost budget: a whole number within ``bounds``."""
    low, high = bounds
    return bounded_int(values, key, default, low, high, f"a whole number from {low:,} to {high:,}")


def host(values: Mapping[str, Any], default: str) -> str:
    """Read HOST: an IPv4 or IPv6 address, or a host name this machine resolves."""
    given = str(values.get("HOST", default)).strip()
    host_address(given)
    return given


def host_address(name: str) -> str:
    """The IP address ``name`` stands for: itself when it is one, else the first address it resolves to."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror; UnicodeError: a label IDNA cannot encode
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        expected = "an IP address or a host name this machine resolves"
        raise ConfigError(f"Config 'HOST' has value {name!r}. Not {expected} ({reason}).") from None
    return str(found[0][4][0])


def trusted_proxies(values: Mapping[str, Any]) -> tuple[str, ...]:
    """Read FORWARDED_ALLOW_IPS: comma-separated addresses or networks (10.0.0.0/8, fd00::/8), or "*" for any."""
    found = tuple(entry.strip() for entry in str(values.get("FORWARDED_ALLOW_IPS", "")).split(",") if entry.strip())
    for entry in found:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry)
        except ValueError as exc:
            message = f"Config 'FORWARDED_ALLOW_IPS' has value {entry!r}. Not an IP address or network ({exc})."
            raise ConfigError(message) from None
    return found


def port(values: Mapping[str, Any], default: int) -> int:
    """Read PORT as a TCP port number, 1-65535."""
    low, high = PORT_RANGE
    return bounded_int(values, "PORT", default, low, high, f"a port number ({low}-{high})")


def writable_folder(values: Mapping[str, Any], key: str) -> Path | None:
    """Read an optional folder setting that must exist and be writable."""
    raw = values.get(key)
    if not raw:
        return None
    folder = Path(str(raw))
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"Config {key!r} has value {str(raw)!r}. Not a writable folder.")
    return folder


def query_logging(values: Mapping[str, Any]) -> dict[str, Any]:
    """Read LOG_QUERIES (none, hmac or text) and, for hmac, the QUERY_LOG_KEY it needs."""
    mode = str(values.get("LOG_QUERIES", "none")).lower()
    if mode not in ("none", "hmac", "text"):
        raise ConfigError(f"Config 'LOG_QUERIES' has value {mode!r}. Expected none, hmac or text.")
    key = str(values.get("QUERY_LOG_KEY", ""))
    if mode == "hmac" and len(key) < 16:
        raise ConfigError("Config 'QUERY_LOG_KEY' must be a secret of at least 16 characters when LOG_QUERIES=hmac.")
    return {"log_queries": mode, "query_log_key": key.encode()}
