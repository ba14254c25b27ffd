"""One time format in every log (lib/logs.py), and one line per request from the development server."""

import io
import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from lib.logs import DEVELOPMENT_FORMAT, DevelopmentRequestHandler, IsoTimeFormatter, JsonLogFormatter, iso_time
from tests.helpers import ISO_TIME
from tests.support.harness import serving


def record(message: str = "hello", created: float = 1796684092.4349) -> logging.LogRecord:
    """A log record made at a known instant."""
    made = logging.LogRecord("lib.test", logging.WARNING, __file__, 1, message, None, None)
    made.created = created
    return made


def test_iso_time_is_utc_to_the_millisecond() -> None:
    assert iso_time(1796684092.4349) == "2026-12-07T22:54:52.434+00:00"
    assert ISO_TIME.fullmatch(iso_time(0.0))


@pytest.mark.parametrize("seconds", [0.0, 0.001, 59.9994, 1796684092.4349, 1796684092.999, 1796684093.0, 4102444799.5])
def test_iso_time_is_what_datetime_writes(seconds: float) -> None:
    assert iso_time(seconds) == datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def test_the_text_and_the_json_formats_write_the_same_time() -> None:
    text = IsoTimeFormatter(DEVELOPMENT_FORMAT).format(record())
    assert text == "2026-12-07T22:54:52.434+00:00 WARNING lib.test: hello"
    line = json.loads(JsonLogFormatter("%(asctime)s %(levelname)s %(message)s").format(record()))
    assert line == {"asctime": "2026-12-07T22:54:52.434+00:00", "levelname": "WARNING", "message": "hello"}


def test_the_development_request_handler_leaves_the_line_to_the_access_log() -> None:
    handler = DevelopmentRequestHandler.__new__(DevelopmentRequestHandler)  # no socket: only its logging is tested
    captured = io.StringIO()
    logger = logging.getLogger("werkzeug")
    stream = logging.StreamHandler(captured)
    logger.addHandler(stream)
    try:
        handler.log_request(200, 42)
    finally:
        logger.removeHandler(stream)
    assert captured.getvalue() == ""


@pytest.mark.slow
def test_development_server_logs_each_request_once_in_the_one_time_format(tmp_path: Path) -> None:
    with serving([sys.executable, "app.py"], {}, tmp_path, name="dev") as server:
        sent = requests.get(f"{server.url}/nowhere", headers={"X-Request-ID": "once-1"}, timeout=10)
    assert sent.status_code == 404
    lines = [line for line in server.stderr.read_text().splitlines() if line.strip()]
    assert [line for line in lines if "/nowhere" in line] == [line for line in lines if "once-1" in line]
    assert len([line for line in lines if "once-1" in line]) == 1, "\n".join(lines)
    stamped = [line for line in lines if not line.startswith((" ", "*", "Press"))]  # werkzeug's banner lines
    assert stamped and all(ISO_TIME.match(line) for line in stamped), "\n".join(lines)
    access = json.loads(next(line for line in lines if "once-1" in line).split(": ", 1)[1])
    assert ISO_TIME.fullmatch(access["time"]) and access["status"] == 404
    assert not re.search(r'"GET /nowhere HTTP/1\.1" 404', server.stderr.read_text())
