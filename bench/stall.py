"""Stalled clients against the bare production server and against the same server behind nginx: /health latency.

    .venv/bin/python -m bench.stall                  # about 1 minute; needs nginx (apt-get install -y nginx)
    .venv/bin/python -m bench.stall --clients 40 --seconds 8

Each case opens ``--clients`` connections that send part of a request and then go silent (headers without their end,
or whole headers and half the body), then asks /health on fresh connections for ``--seconds``, each probe waiting at
most ``--probe-timeout``; the worst probe is the figure. The drill itself is tests/support/stall.py, which
tests/test_deployed_stack.py runs too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.harness import ServerError, production_command, serving
from tests.support.proxy import proxying
from tests.support.stall import STALLS, health_under_stall, settle


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clients", type=int, default=40, help="stalled connections held open at once")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long /health is probed while they stall")
    parser.add_argument("--probe-timeout", type=float, default=10.0, help="longest a /health probe waits")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY of the production server")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both stalls against the bare server, then through nginx, and print one line each."""
    args = parse_args(argv)
    print(f"{args.clients} stalled clients, /health probed for {args.seconds:g} s; production server, {args.workers} workers")
    try:
        with tempfile.TemporaryDirectory(prefix="sentiment-stall-") as logs:
            env = {"WEB_CONCURRENCY": str(args.workers), "ACCESS_LOG": ""}
            with serving(production_command(), env, Path(logs), name="app") as app, proxying([app.port], Path(logs)) as proxy:
                for front, server in (("bare server", app), ("behind nginx", proxy)):
                    for stall in STALLS:
                        result = health_under_stall(server, stall, args.clients, args.seconds, args.probe_timeout)
                        print(f"{front:13} {stall:13} {result.describe(args.probe_timeout)}", flush=True)
                        settle(server.url, args.probe_timeout)
    except (ServerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
