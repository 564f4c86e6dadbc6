"""Shared limits on a real ``prefect server start``: separate processes, one account.

The account's run, status and in-flight limits are global concurrency limits on the
server whose slots are leased per call and per prediction
(fashn_prefect/scheduler/server.py). These tests run ``fashn-prefect run`` processes
against the emulator and check what a user would see: every row completed, no 429, never
more in flight than the limit, and the limits created when the server lacks them. The
slots of a SIGKILLed process coming back by themselves, never early, are in
tests/scheduler/test_leases_killed.py (a wait for a lease to expire, beside these tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _helpers import all_results, catalog_rows, limit_rejections, write_manifest
from _leases import account_of, finish, lease_server, limits_of, start_run
from _servers import FASHN_PREFECT, BusyProxy, PrefectServer
from prefect.settings import PREFECT_API_URL, temporary_settings

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.scheduler.account import AccountScheduler
from fashn_prefect.scheduler.leases import HANDOFFS, ServerLimits
from fashn_prefect.scheduler.rates import ApiLimits

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One Prefect server (SQLite) for the module."""
    with lease_server(tmp_path_factory) as srv:
        yield srv


def test_two_processes_share_the_limits_and_both_progress(
    server: PrefectServer, tmp_path: Path
) -> None:
    scale = 0.05
    with EmulatorServer(EmulatorConfig(time_scale=scale, seed=3)) as emu:
        runs = [start_run(server, emu, tmp_path, f"run{i}", 24, scale) for i in range(2)]
        for i, (proc, _) in enumerate(runs):
            finish(server, proc, f"run{i}")
        stats = emu.stats()

    created = {p["id"]: p["created_at"] for p in stats["predictions"]}
    spans = []
    for _, output in runs:
        rows = all_results(output)
        assert {r["status"] for r in rows} == {"completed"}
        times = sorted(created[pid] for r in rows for pid in r["prediction_ids"])
        spans.append((times[0], times[-1]))
    assert len(stats["predictions"]) == 48
    assert limit_rejections(stats) == {}
    assert stats["peak_in_flight"] <= 6
    # Neither run waited for the other to finish: their submissions overlap in time.
    (_, last_a), (first_b, _) = sorted(spans)
    assert first_b < last_a, spans
    # Every slot was given back when the runs ended.
    account = account_of(emu)
    limits = limits_of(server)
    for kind in ("run", "status", "in-flight"):
        assert limits[f"fashn-{account}-{kind}"]["active_slots"] == 0, (
            kind,
            server.log_tail("run0.log"),
            server.log_tail("run1.log"),
        )


def test_a_run_creates_missing_limits_with_the_configured_sizes(
    server: PrefectServer, tmp_path: Path
) -> None:
    scale = 0.05
    with EmulatorServer(EmulatorConfig(time_scale=scale, seed=5, max_in_flight=6)) as emu:
        account = account_of(emu)
        for name in limits_of(server):  # a server that has never seen this account
            if name.startswith(f"fashn-{account}"):
                httpx.delete(f"{server.api_url}/v2/concurrency_limits/{name}").raise_for_status()
        assert not any(name.startswith(f"fashn-{account}") for name in limits_of(server))
        manifest = write_manifest(tmp_path / "m.csv", catalog_rows(8, emu, prefix="new"))
        done = server.run(
            [
                FASHN_PREFECT,
                "run",
                manifest,
                "--output",
                str(tmp_path / "out"),
                "--time-scale",
                str(scale),
                "--max-in-flight",
                "4",
                "--run-limit",
                "40/60",
                "--quiet",
            ],
            timeout=240,
            FASHN_API_KEY=emu.api_key,
            FASHN_BASE_URL=emu.url,
        )
        stats = emu.stats()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    limits = limits_of(server)
    sizes = {kind: limits[f"fashn-{account}-{kind}"]["limit"] for kind in ("run", "status")}
    assert sizes == {"run": 40, "status": 50}
    assert limits[f"fashn-{account}-in-flight"]["limit"] == 4
    assert stats["peak_in_flight"] <= 4
    assert limit_rejections(stats) == {}


TAKE = "increment-with-lease"  # the server endpoint that takes a slot


def test_a_busy_server_is_asked_again_until_it_grants_the_slot(server: PrefectServer) -> None:
    # SQLite answers "503 database is locked" while another write holds the database.
    # Eight busy answers in a row are more than the Prefect client's own retries (five,
    # after 2, 4, 8... s) would survive; the slot must still be granted, and counted once.
    limits = ApiLimits(max_in_flight=2)
    with BusyProxy(server.api_url) as proxy, temporary_settings({PREFECT_API_URL: proxy.url}):
        slots = ServerLimits("busy-server", limits)
        try:
            slots_on_server = limits_of(server)  # before: the account has none yet
            assert "fashn-busy-server-in-flight" not in slots_on_server
            asyncio.run(slots.take(slots.status_name))  # creates the limits
            proxy.busy(TAKE, times=8)
            before = proxy.count(TAKE)
            lease = asyncio.run(slots.take(slots.in_flight_name))
            assert proxy.count(TAKE) - before == 9  # eight busy answers, then the grant
            assert limits_of(server)["fashn-busy-server-in-flight"]["active_slots"] == 1
            slots.release(lease)
        finally:
            slots.close()
    assert limits_of(server)["fashn-busy-server-in-flight"]["active_slots"] == 0


def test_a_freed_slot_goes_to_the_next_prediction_here_until_another_process_waits(
    server: PrefectServer,
) -> None:
    limits = ApiLimits(max_in_flight=1)
    with BusyProxy(server.api_url) as proxy, temporary_settings({PREFECT_API_URL: proxy.url}):
        here = AccountScheduler(limits, ServerLimits("handoff", limits, poll=2.0))
        there = ServerLimits("handoff", limits)  # another process of the same account
        assert here.server is not None

        async def scenario() -> int:
            held = await here.acquire_slot()
            for n in range(4):  # four predictions in a row, one after another
                here.lease(f"p{n}", 600, held)
                here.release_prediction(f"p{n}")
                held = await here.acquire_slot()
            # The one server slot went from each prediction to the next: one take in all.
            assert proxy.count(TAKE) == 1

            waiting = asyncio.ensure_future(there.take(there.in_flight_name))
            deadline = time.monotonic() + 30
            while not here.server.others_waiting:  # seen within WATCH_SECONDS
                assert time.monotonic() < deadline, "the waiting process was never seen"
                await asyncio.sleep(0.05)
            handed_on = 0
            for n in range(HANDOFFS + 3):
                here.lease(f"q{n}", 600, held)
                here.release_prediction(f"q{n}")
                mine = asyncio.ensure_future(here.acquire_slot())
                await asyncio.wait({waiting, mine}, timeout=30, return_when="FIRST_COMPLETED")
                if waiting.done():
                    break
                held = mine.result()
                handed_on += 1
            assert waiting.done(), "the waiting process never got the slot"
            there.release(waiting.result())
            here.release_slot(await asyncio.wait_for(mine, 30))
            return handed_on

        try:
            handed_on = asyncio.run(scenario())
        finally:
            here.server.close()
            there.close()
    # While the other process waited, the slot stayed here at most HANDOFFS more times.
    assert handed_on <= HANDOFFS
    assert limits_of(server)["fashn-handoff-in-flight"]["active_slots"] == 0


def test_blocked_takes_of_one_process_ask_the_server_one_at_a_time(
    server: PrefectServer,
) -> None:
    # Every ask for a full limit is a write on the server. A process whose six rows all
    # wait must not ask six times per poll interval: one asks, the others queue behind it.
    limits = ApiLimits(max_in_flight=1)
    poll = 0.2
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        there = ServerLimits("one-asker", limits)  # another process holds the only slot
    with BusyProxy(server.api_url) as proxy, temporary_settings({PREFECT_API_URL: proxy.url}):
        here = ServerLimits("one-asker", limits, poll=poll)

        async def scenario() -> tuple[int, float]:
            held = await there.take(there.in_flight_name)
            started = time.monotonic()
            takes = [asyncio.ensure_future(here.take(here.in_flight_name)) for _ in range(4)]
            await asyncio.sleep(2.0)
            asks, elapsed = proxy.count(TAKE), time.monotonic() - started
            there.release(held)
            for taken in asyncio.as_completed(takes, timeout=60):  # each one is served
                here.release(await taken)
            return asks, elapsed

        try:
            asks, elapsed = asyncio.run(scenario())
        finally:
            here.close()
            there.close()
    # Four first tries and one 'waiting' slot, then one ask per poll interval at most
    # (four askers would make about four times as many).
    assert asks <= 4 + 1 + elapsed / poll + 2, (asks, elapsed)
    assert limits_of(server)["fashn-one-asker-in-flight"]["active_slots"] == 0
