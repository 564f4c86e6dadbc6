"""deployments/prefect.yaml on a real ``prefect server start`` with two process workers.

One server (SQLite, private PREFECT_HOME, free loopback port) and two workers serve the
whole module; every process is in its own process group and killed at teardown.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    all_results,
    catalog_rows,
    limit_rejections,
    predictions_per_input,
    write_manifest,
)
from _servers import PREFECT, PrefectServer, free_port
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

POOL = "fashn"
# Shared limits cost one Prefect-server round trip per API call; a less compressed clock
# keeps the runs long enough to overlap without making them API-call bound.
TIME_SCALE = 0.05


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    """One emulator for the module (stats are compared as differences)."""
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=11)) as emu:
        yield emu


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorServer
) -> Iterator[PrefectServer]:
    """Server up, work pool created, credentials block saved, prefect.yaml deployed,
    two workers polling the pool."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-home"), free_port())
    try:
        server.start()
        created = server.run([PREFECT, "work-pool", "create", POOL, "--type", "process"])
        assert created.returncode == 0, created.stdout + created.stderr
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            FashnCredentials(api_key=emulator.api_key, base_url=emulator.url).save(
                "fashn", overwrite=True
            )
        deploy = server.run(
            [
                PREFECT,
                "--no-prompt",
                "deploy",
                "--all",
                "--prefect-file",
                "deployments/prefect.yaml",
            ],
            timeout=180,
        )
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        for name in ("worker-a", "worker-b"):
            server.spawn(
                [PREFECT, "worker", "start", "--pool", POOL, "--name", name, "--limit", "2"],
                f"{name}.log",
                PREFECT_WORKER_QUERY_SECONDS="1",
                PREFECT_WORKER_PREFETCH_SECONDS="0",
                PREFECT_LOGGING_LEVEL="INFO",
            )
        yield server
    finally:
        server.close()


@pytest.fixture
async def api(deployed: PrefectServer) -> AsyncIterator[PrefectServer]:
    """This test's Prefect client talks to the module's server."""
    with temporary_settings(updates={PREFECT_API_URL: deployed.api_url}):
        yield deployed


def _catalog(
    tmp: Path, emu: EmulatorServer, rows: int, prefix: str, seed_base: int = 1000
) -> dict[str, Any]:
    rows_ = catalog_rows(rows, emu, prefix=prefix, seed_base=seed_base)
    manifest = write_manifest(tmp / f"{prefix}.csv", rows_)
    # Options go in the one settings parameter (FashnSettings), as in deployments/prefect.yaml.
    settings = {"time_scale": TIME_SCALE}
    return {"manifest": manifest, "output": str(tmp / prefix), "settings": settings}


async def _run(name: str, parameters: dict[str, Any], server: PrefectServer) -> Any:
    flow_run = await run_deployment(name, parameters=parameters, timeout=240, poll_interval=1)
    assert flow_run.state is not None and flow_run.state.is_completed(), (
        flow_run.state,
        server.log_tail("worker-a.log"),
        server.log_tail("worker-b.log"),
    )
    return flow_run


async def test_deployments_and_schedules_are_registered(api: PrefectServer) -> None:
    async with get_client() as client:
        catalog = await client.read_deployment_by_name("fashn-catalog-run/catalog-nightly")
        audit = await client.read_deployment_by_name("fashn-credit-audit/audit-weekly")
        backfill = await client.read_deployment_by_name("fashn-backfill/backfill")
    assert [s.schedule.cron for s in catalog.schedules] == ["0 2 * * *"]  # type: ignore[union-attr]
    assert [s.schedule.cron for s in audit.schedules] == ["0 6 * * 1"]  # type: ignore[union-attr]
    assert backfill.schedules == []
    assert {catalog.work_pool_name, audit.work_pool_name, backfill.work_pool_name} == {POOL}
    assert catalog.parameters["credentials"] == "fashn"


async def test_catalog_deployment_runs_on_a_worker(
    api: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    before = len(emulator.stats()["predictions"])
    params = _catalog(tmp_path, emulator, 12, "nightly")
    await _run("fashn-catalog-run/catalog-nightly", params, api)

    rows = all_results(Path(params["output"]))
    assert len(rows) == 12 and {r["status"] for r in rows} == {"completed"}
    for row in rows:
        assert all(Path(u.removeprefix("file://")).is_file() for u in row["output_uris"])
    assert len(emulator.stats()["predictions"]) - before == 12

    # The audit deployment reads the same output root.
    audit = await _run("fashn-credit-audit/audit-weekly", {"output": params["output"]}, api)
    async with get_client() as client:
        artifacts = await client.read_artifacts()
    assert any(a.key == "fashn-credit-audit" for a in artifacts)
    assert list((Path(params["output"]) / "audit").glob("*-spend.png"))
    assert audit.state is not None


async def test_two_workers_share_the_api_limits(
    api: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    emulator.reset()
    runs = [_catalog(tmp_path, emulator, 10, f"brand{i}", 2000 + 100 * i) for i in range(3)]
    # The catalog deployment runs one catalog at a time (its concurrency limit), so the
    # parallel runs here are backfills of three brands' histories.
    flow_runs = await asyncio.gather(*(_run("fashn-backfill/backfill", p, api) for p in runs))
    stats = emulator.stats()

    # Every run completed, and together they stayed within the account's limits.
    for params in runs:
        assert {r["status"] for r in all_results(Path(params["output"]))} == {"completed"}
    assert len(stats["predictions"]) == 30
    assert max(predictions_per_input(stats).values()) == 1
    assert stats["peak_in_flight"] <= 6
    assert limit_rejections(stats) == {}
    print(
        f"scale-out: peak in flight {stats['peak_in_flight']}, {len(stats['predictions'])} predictions"
    )
    # Both workers ran flow runs, and runs overlapped in time.
    logs = [api.log_tail(f"{name}.log", 1_000_000) for name in ("worker-a", "worker-b")]
    ran = [{str(r.id) for r in flow_runs if str(r.id) in log} for log in logs]
    assert all(ran) and set.union(*ran) == {str(r.id) for r in flow_runs}, ran
    spans = sorted((r.start_time, r.end_time) for r in flow_runs)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
