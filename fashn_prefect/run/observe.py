"""What a caller outside the flow (the CLI) hears about the runs it starts.

A :class:`RunObserver` is installed for a block with :func:`observing`; every run started
inside the block (subflows included) picks it up once, when it starts, and reports
finished rows and started submissions to it. Nothing is kept between blocks: the
observer lives in a context variable, not in module state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["ProgressCallback", "RunObserver", "current_observer", "observing"]

ProgressCallback = Callable[[int, int], None]


@dataclass
class RunObserver:
    """Receives ``on_progress(done, total)`` and counts ``POST /v1/run`` requests started."""

    on_progress: ProgressCallback | None = None
    parent: RunObserver | None = None
    posts_started: int = 0

    def post_started(self) -> None:
        """A submission was sent (it may be charged)."""
        self.posts_started += 1
        if self.parent is not None:
            self.parent.post_started()

    def progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` rows have finished."""
        if self.on_progress is not None:
            self.on_progress(done, total)


_OBSERVER: ContextVar[RunObserver | None] = ContextVar("fashn_run_observer", default=None)


def current_observer() -> RunObserver | None:
    """The observer installed around the current run, if any."""
    return _OBSERVER.get()


@contextmanager
def observing(observer: RunObserver) -> Iterator[RunObserver]:
    """Report the runs started in this block to ``observer``."""
    token = _OBSERVER.set(observer)
    try:
        yield observer
    finally:
        _OBSERVER.reset(token)
