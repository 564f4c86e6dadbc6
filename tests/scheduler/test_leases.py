"""Shared limits on a real ``prefect server start``: separate processes, one account.

The account's run, status and in-flight limits are global concurrency limits on the
server whose slots are leased per call and per prediction
(fashn_prefect/scheduler/server.py). These tests run ``fashn-prefect run`` processes
against the emulator and check what a user would see: every row completed, no 429, never
more in flight than the limit, the limits created when the server lacks them, and the
slots of a SIGKILLed process coming back by themselves, never early.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _helpers import all_results, catalog_rows, limit_rejections, write_manifest
from _servers import FASHN_PREFECT, BusyProxy, PrefectServer, free_port, kill_group
from prefect.settings import PREFECT_API_URL, temporary_settings

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.scheduler.account import AccountScheduler
from fashn_prefect.scheduler.leases import HANDOFFS, LEASE_SECONDS, RENEW_EVERY, ServerLimits
from fashn_prefect.scheduler.rates import ApiLimits

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPOSSESSOR_SECONDS = 1  # the server revokes expired leases this often (default 15 s)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One Prefect server (SQLite) for the module."""
    srv = PrefectServer(
        tmp_path_factory.mktemp("prefect-home"),
        free_port(),
        settings={"PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": str(REPOSSESSOR_SECONDS)},
    )
    try:
        yield srv.start()
    finally:
        srv.close()


def _limits(server: PrefectServer) -> dict[str, dict[str, Any]]:
    """The server's global concurrency limits by name."""
    response = httpx.post(f"{server.api_url}/v2/concurrency_limits/filter", json={}, timeout=10)
    response.raise_for_status()
    return {limit["name"]: limit for limit in response.json()}


def _account(emu: EmulatorServer) -> str:
    return FashnCredentials(api_key=emu.api_key, base_url=emu.url).account_id


def _start_run(
    server: PrefectServer, emu: EmulatorServer, tmp: Path, name: str, rows: int, scale: float
) -> tuple[subprocess.Popen[bytes], Path]:
    manifest = write_manifest(
        tmp / f"{name}.csv",
        catalog_rows(rows, emu, prefix=name, seed_base=1000 + 100 * len(name) + ord(name[-1])),
    )
    output = tmp / name
    proc = server.spawn(
        [
            FASHN_PREFECT,
            "run",
            manifest,
            "--output",
            str(output),
            "--time-scale",
            str(scale),
            "--quiet",
        ],
        f"{name}.log",
        FASHN_API_KEY=emu.api_key,
        FASHN_BASE_URL=emu.url,
        PREFECT_LOGGING_EXTRA_LOGGERS="fashn_prefect",
    )
    return proc, output


def _finish(server: PrefectServer, proc: subprocess.Popen[bytes], name: str) -> None:
    assert proc.wait(timeout=300) == 0, server.log_tail(f"{name}.log")


def test_two_processes_share_the_limits_and_both_progress(
    server: PrefectServer, tmp_path: Path
) -> None:
    scale = 0.05
    with EmulatorServer(EmulatorConfig(time_scale=scale, seed=3)) as emu:
        runs = [_start_run(server, emu, tmp_path, f"run{i}", 24, scale) for i in range(2)]
        for i, (proc, _) in enumerate(runs):
            _finish(server, proc, f"run{i}")
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
    account = _account(emu)
    limits = _limits(server)
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
        account = _account(emu)
        for name in _limits(server):  # a server that has never seen this account
            if name.startswith(f"fashn-{account}"):
                httpx.delete(f"{server.api_url}/v2/concurrency_limits/{name}").raise_for_status()
        assert not any(name.startswith(f"fashn-{account}") for name in _limits(server))
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
    limits = _limits(server)
    sizes = {kind: limits[f"fashn-{account}-{kind}"]["limit"] for kind in ("run", "status")}
    assert sizes == {"run": 40, "status": 50}
    assert limits[f"fashn-{account}-in-flight"]["limit"] == 4
    assert stats["peak_in_flight"] <= 4
    assert limit_rejections(stats) == {}


def test_slots_of_a_killed_process_come_back_after_their_lease_never_before(
    server: PrefectServer, tmp_path: Path
) -> None:
    scale = 0.25
    with EmulatorServer(EmulatorConfig(time_scale=scale, seed=7)) as emu:
        names = [f"fashn-{_account(emu)}-{kind}" for kind in ("run", "status", "in-flight")]

        def held() -> int:
            limits = _limits(server)
            return sum(limits.get(name, {}).get("active_slots", 0) for name in names)

        doomed, _ = _start_run(server, emu, tmp_path, "doomed", 40, scale)
        deadline = time.monotonic() + 120
        while _limits(server).get(names[2], {}).get("active_slots", 0) < 3:
            assert time.monotonic() < deadline and doomed.poll() is None
            time.sleep(0.1)
        kill_group(doomed)
        killed_at = time.monotonic()
        doomed.wait(timeout=10)
        assert held() > 0

        # Another run of the account meanwhile: it uses what the dead one left free.
        survivor, output = _start_run(server, emu, tmp_path, "survivor", 6, scale)
        _finish(server, survivor, "survivor")
        stats = emu.stats()
        # The dead run's slots stay taken until their lease expires, then come back.
        while held() > 0:
            assert time.monotonic() - killed_at < LEASE_SECONDS + 60, "slots never came back"
            time.sleep(0.2)
        back_after = time.monotonic() - killed_at

    print(f"slots back {back_after:.1f} s after SIGKILL (lease {LEASE_SECONDS:g} s)")
    assert back_after >= LEASE_SECONDS - RENEW_EVERY - 1, back_after
    assert {r["status"] for r in all_results(output)} == {"completed"}
    assert limit_rejections(stats) == {}
    assert stats["peak_in_flight"] <= 6


TAKE = "increment-with-lease"  # the server endpoint that takes a slot


def test_a_busy_server_is_asked_again_until_it_grants_the_slot(server: PrefectServer) -> None:
    # SQLite answers "503 database is locked" while another write holds the database.
    # Eight busy answers in a row are more than the Prefect client's own retries (five,
    # after 2, 4, 8... s) would survive; the slot must still be granted, and counted once.
    limits = ApiLimits(max_in_flight=2)
    with BusyProxy(server.api_url) as proxy, temporary_settings({PREFECT_API_URL: proxy.url}):
        slots = ServerLimits("busy-server", limits)
        try:
            slots_on_server = _limits(server)  # before: the account has none yet
            assert "fashn-busy-server-in-flight" not in slots_on_server
            asyncio.run(slots.take(slots.status_name))  # creates the limits
            proxy.busy(TAKE, times=8)
            before = proxy.count(TAKE)
            lease = asyncio.run(slots.take(slots.in_flight_name))
            assert proxy.count(TAKE) - before == 9  # eight busy answers, then the grant
            assert _limits(server)["fashn-busy-server-in-flight"]["active_slots"] == 1
            slots.release(lease)
        finally:
            slots.close()
    assert _limits(server)["fashn-busy-server-in-flight"]["active_slots"] == 0


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
    assert _limits(server)["fashn-handoff-in-flight"]["active_slots"] == 0


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
    assert _limits(server)["fashn-one-asker-in-flight"]["active_slots"] == 0
