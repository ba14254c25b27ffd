"""``python -m tests.server_that_cannot_fork``: the production server, whose granian cannot start a worker after its first.

Forking fails so (EAGAIN) when the machine is out of memory or processes. On SIGHUP, granian's respawn has then taken
an old worker out of its list and raises out of its serve loop, with every worker still running.
"""

import errno
from typing import Any

from granian.server.mp import MPServer

from lib import server

spawn = MPServer._spawn_worker


def spawn_first_workers_only(self: MPServer, *args: Any, **kwargs: Any) -> Any:
    """Start the workers the server starts with; fail, as fork would, for those a reload starts."""
    if self.respawned_wrks:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    return spawn(self, *args, **kwargs)


if __name__ == "__main__":
    MPServer._spawn_worker = spawn_first_workers_only  # type: ignore[method-assign]
    server.main()
