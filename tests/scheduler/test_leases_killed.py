"""Shared limits on a real ``prefect server start``: the slots of a SIGKILLed process.

A ``fashn-prefect run`` process is killed while it holds slots of the account's limits
(fashn_prefect/scheduler/leases.py); its slots come back by themselves when their lease
expires, never before, and another run of the account meanwhile completes with what the
dead one left free. (Apart from tests/scheduler/test_leases.py, with its own server, so
that the wait for the lease runs beside those tests.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import all_results, limit_rejections
from _leases import account_of, finish, lease_server, limits_of, start_run
from _servers import PrefectServer, kill_group

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.scheduler.leases import LEASE_SECONDS, RENEW_EVERY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One Prefect server (SQLite) for the module."""
    with lease_server(tmp_path_factory) as srv:
        yield srv


def test_slots_of_a_killed_process_come_back_after_their_lease_never_before(
    server: PrefectServer, tmp_path: Path
) -> None:
    scale = 0.25
    with EmulatorServer(EmulatorConfig(time_scale=scale, seed=7)) as emu:
        names = [f"fashn-{account_of(emu)}-{kind}" for kind in ("run", "status", "in-flight")]

        def held() -> int:
            limits = limits_of(server)
            return sum(limits.get(name, {}).get("active_slots", 0) for name in names)

        doomed, _ = start_run(server, emu, tmp_path, "doomed", 40, scale)
        deadline = time.monotonic() + 120
        while limits_of(server).get(names[2], {}).get("active_slots", 0) < 3:
            assert time.monotonic() < deadline and doomed.poll() is None
            time.sleep(0.1)
        kill_group(doomed)
        killed_at = time.monotonic()
        doomed.wait(timeout=10)
        assert held() > 0

        # Another run of the account meanwhile: it uses what the dead one left free.
        survivor, output = start_run(server, emu, tmp_path, "survivor", 6, scale)
        finish(server, survivor, "survivor")
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
