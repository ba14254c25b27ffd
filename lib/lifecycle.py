"""Whether this server should still receive traffic: the one flag a graceful shutdown sets."""

from __future__ import annotations

import multiprocessing


class Lifecycle:
    """Whether this server should still receive traffic: not once a graceful shutdown has begun.

    The flag lives in shared memory made before the workers fork, so the server's parent can set it for all of them.
    """

    def __init__(self) -> None:
        self._draining = multiprocessing.Event()

    @property
    def draining(self) -> bool:
        """True once ``begin_drain`` was called."""
        return self._draining.is_set()

    def begin_drain(self) -> None:
        """Say "not ready" from now on, while requests already routed here are still answered."""
        self._draining.set()
