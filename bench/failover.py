"""Kill a replica behind nginx under load: what clients see, and whether the restarted replica gets traffic again.

    .venv/bin/python -m bench.failover              # about 30 s; needs nginx (apt-get install -y nginx)

Two drills, each with nginx (deploy/nginx.conf) in front of ``--replicas`` production servers, every one its own
process group on its own port:

- kill: GET clients (and one client posting batches) run without pause; a third of the way in one replica's whole
  process group gets SIGKILL; later it is started again on its port, and the drill waits until nginx's access log
  shows it answering. Target: 0 failed GETs.
- POST in flight: one replica is frozen (SIGSTOP), GETs and POSTs are sent so that some are in flight on it, and then
  it gets SIGKILL: nginx retries the GETs on another replica, and answers the POSTs it had already passed on with 502.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.failover import kill_drill, post_in_flight
from tests.support.harness import ServerError


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--replicas", type=int, default=3, help="production servers behind nginx")
    parser.add_argument("--workers", type=int, default=1, help="WEB_CONCURRENCY of each replica")
    parser.add_argument("--seconds", type=float, default=9.0, help="load time of the kill drill, restart wait aside")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run both drills and print what the clients saw."""
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="sentiment-failover-") as logs:
            killed = kill_drill(Path(logs), args.replicas, args.workers, args.seconds)
            frozen = post_in_flight(Path(logs), max(2, args.replicas - 1), args.workers)
    except (ServerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"kill drill: {args.replicas} replicas x {args.workers} worker(s) behind nginx, one SIGKILLed under load")
    for method, counts in killed.outcomes.items():
        print(f"  {method:4} answers by outcome: {counts}")
    print(f"  failed GETs: {killed.get_failed}, failed POSTs: {killed.post_failed}")
    recovery = "never" if killed.seconds_to_traffic is None else f"{killed.seconds_to_traffic} s after it was ready"
    print(f"  restarted replica answered {killed.answered_by_restarted} requests through nginx (first: {recovery})")
    print("POST in flight: one replica frozen with requests waiting on it, then SIGKILLed")
    for method, counts in frozen.items():
        print(f"  {method:4} answers by outcome: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
