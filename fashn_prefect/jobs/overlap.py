"""Run a sequence of chunks a few at a time: the next one starts as soon as one ends.

A backfill's chunks run this way so that the account's slots stay full across chunk
boundaries: while one chunk drains its last predictions, the next is already
submitting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

C = TypeVar("C")
R = TypeVar("R")


async def run_overlapped(
    chunks: Sequence[C],
    run: Callable[[C], Awaitable[R]],
    *,
    at_once: int,
    admit: Callable[[C, list[C]], bool],
    finished: Callable[[C, R], None],
) -> None:
    """Await ``run(chunk)`` for each chunk in order, at most ``at_once`` at a time.

    Before a chunk starts, ``admit(chunk, running)`` decides whether it may (False: it and
    every later chunk are not started). ``finished(chunk, result)`` is called as each chunk
    ends. A chunk that raises stops later starts. Chunks already running are never
    abandoned: they are awaited, then the first error is raised.
    """
    if at_once < 1:
        raise ValueError("at_once must be at least 1")
    running: dict[asyncio.Future[R], C] = {}
    failure: BaseException | None = None

    async def settle(until_fewer_than: int) -> None:
        nonlocal failure
        while running and len(running) >= until_fewer_than:
            ended, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for future in ended:
                chunk = running.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                else:
                    finished(chunk, future.result())

    try:
        for chunk in chunks:
            await settle(until_fewer_than=at_once)
            if failure is not None or not admit(chunk, list(running.values())):
                break
            running[asyncio.ensure_future(run(chunk))] = chunk
    finally:
        await settle(until_fewer_than=1)
    if failure is not None:
        raise failure
