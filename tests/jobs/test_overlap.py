"""Chunks run a few at a time (a backfill's chunks): the next starts as soon as one ends."""

from __future__ import annotations

import asyncio

import pytest

from fashn_prefect.jobs.overlap import run_overlapped


class Chunks:
    """Chunks that run until the test lets each one end (or fail)."""

    def __init__(self, count: int) -> None:
        self.release = {i: asyncio.Event() for i in range(count)}
        self.fail: set[int] = set()
        self.started: list[int] = []
        self.running: set[int] = set()
        self.most_at_once = 0
        self.finished: list[tuple[int, str]] = []

    async def run(self, chunk: int) -> str:
        self.started.append(chunk)
        self.running.add(chunk)
        self.most_at_once = max(self.most_at_once, len(self.running))
        try:
            await self.release[chunk].wait()
            if chunk in self.fail:
                raise RuntimeError(f"chunk {chunk} crashed")
            return f"result {chunk}"
        finally:
            self.running.discard(chunk)

    def done(self, chunk: int, result: str) -> None:
        self.finished.append((chunk, result))

    async def until_started(self, chunk: int) -> None:
        async def started() -> None:
            while chunk not in self.started:
                await asyncio.sleep(0)

        await asyncio.wait_for(started(), timeout=10)


async def test_the_next_chunk_starts_while_the_last_one_runs_never_more_at_once() -> None:
    chunks = Chunks(4)
    work = asyncio.ensure_future(
        run_overlapped(
            range(4), chunks.run, at_once=2, admit=lambda c, r: True, finished=chunks.done
        )
    )
    await chunks.until_started(1)
    assert chunks.started == [0, 1]  # two at once, before either ended
    chunks.release[1].set()  # the second ends first: the third starts in its place
    await chunks.until_started(2)
    assert chunks.running == {0, 2}
    for event in chunks.release.values():
        event.set()
    await work
    assert chunks.started == [0, 1, 2, 3]
    assert chunks.most_at_once == 2
    assert sorted(chunks.finished) == [(i, f"result {i}") for i in range(4)]


async def test_a_chunk_not_admitted_stops_the_rest_and_running_chunks_finish() -> None:
    chunks = Chunks(4)
    seen: list[tuple[int, list[int]]] = []

    def admit(chunk: int, running: list[int]) -> bool:
        seen.append((chunk, running))
        return chunk < 2  # the budget covers chunks 0 and 1 only

    for event in chunks.release.values():
        event.set()
    await run_overlapped(range(4), chunks.run, at_once=2, admit=admit, finished=chunks.done)
    assert chunks.started == [0, 1]
    assert [c for c, _ in sorted(chunks.finished)] == [0, 1]
    # Chunk 2 was judged with what was still running at that moment.
    assert seen[0] == (0, []) and seen[1] == (1, [0]) and seen[2][0] == 2


async def test_a_crashed_chunk_stops_later_starts_after_the_running_ones_finish() -> None:
    chunks = Chunks(4)
    chunks.fail.add(0)
    work = asyncio.ensure_future(
        run_overlapped(
            range(4), chunks.run, at_once=2, admit=lambda c, r: True, finished=chunks.done
        )
    )
    await chunks.until_started(1)
    chunks.release[0].set()  # chunk 0 crashes while chunk 1 still runs
    for _ in range(20):
        await asyncio.sleep(0)
    assert not work.done()  # chunk 1 is never abandoned
    assert chunks.started == [0, 1]
    chunks.release[1].set()
    with pytest.raises(RuntimeError, match="chunk 0 crashed"):
        await work
    assert chunks.started == [0, 1]
    assert chunks.finished == [(1, "result 1")]
