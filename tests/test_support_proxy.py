"""tests/support/proxy.py's rewrite of deploy/nginx.conf for N replicas: only the listen line and the upstream servers change."""

from __future__ import annotations

import pytest

from tests.support.proxy import NGINX_CONF, ProxyConfigError, nginx_config


def test_one_server_line_per_replica_with_the_same_parameters() -> None:
    text = nginx_config(9000, [9001, 9002, 9003])
    original = NGINX_CONF.read_text()
    [parameters] = [line.split("127.0.0.1:8000", 1)[1] for line in original.splitlines() if "server 127.0.0.1:8000" in line]
    for port in (9001, 9002, 9003):
        assert f"        server 127.0.0.1:{port}{parameters}" in text.splitlines()
    assert "        listen 127.0.0.1:9000;" in text.splitlines()
    assert "127.0.0.1:8000" not in text and "listen 8080" not in text


def test_everything_else_is_the_pods_config() -> None:
    changed = {"listen 8080;", "server 127.0.0.1:8000"}
    kept = [line for line in NGINX_CONF.read_text().splitlines() if not any(part in line for part in changed)]
    rewritten = nginx_config(9000, [9001, 9002]).splitlines()
    assert [line for line in rewritten if line in kept] == kept
    assert len(rewritten) == len(kept) + 3


def test_a_config_without_the_rewritten_lines_is_refused() -> None:
    with pytest.raises(ProxyConfigError, match="listen"):
        nginx_config(9000, [9001], text="events {}\nhttp { upstream app { server 127.0.0.1:8000; } }\n")
    with pytest.raises(ValueError, match="upstream"):
        nginx_config(9000, [])
