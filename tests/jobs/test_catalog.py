"""The recurring catalog flow: only new or changed rows are submitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    TIME_SCALE,
    all_results,
    catalog_rows,
    count_validations,
    predictions_per_input,
    write_manifest,
)
from _servers import REPO
from prefect.flows import load_flow_from_entrypoint

from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.jobs.catalog import catalog_changes
from fashn_prefect.run.outcome import summary_of

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def catalog_flow() -> Any:
    """The flow exactly as the deployment loads it (``flows/catalog_run.py:catalog_run``)."""
    return load_flow_from_entrypoint(str(REPO / "flows" / "catalog_run.py") + ":catalog_run")


async def test_changed_rows_are_the_only_submissions(
    tmp_path: Path, catalog_flow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    with EmulatorServer(EmulatorConfig(time_scale=TIME_SCALE, seed=4)) as emu:
        monkeypatch.setenv("FASHN_API_KEY", emu.api_key)
        monkeypatch.setenv("FASHN_BASE_URL", emu.url)
        rows = catalog_rows(40, emu)
        manifest = write_manifest(tmp_path / "catalog.csv", rows)
        params = {
            "manifest": manifest,
            "output": str(output),
            "time_scale": TIME_SCALE,
            # One process, one run at a time: in-process limits suffice (the deployment
            # tests cover limits shared on the server).
            "shared_limits": False,
        }

        validations = count_validations(monkeypatch)
        first = await summary_of(catalog_flow(**params))
        assert first["changes"]["new"] == 40
        # The catalog is read and validated once; its run takes the rows as checked.
        assert validations == [manifest]
        assert len(emu.stats()["predictions"]) == 40

        # The business edits three products (new seeds = new inputs) and nothing else.
        for i in (3, 17, 31):
            rows[i]["seed"] = str(9000 + i)
        write_manifest(tmp_path / "catalog.csv", rows)
        before = len(emu.stats()["predictions"])
        second = await summary_of(catalog_flow(**params))
        stats = emu.stats()

        assert len(stats["predictions"]) - before == 3
        assert second["changes"] == {
            **second["changes"],
            "new": 0,
            "changed": 3,
            "unchanged": 37,
            "to_run": 3,
        }
        assert second["run"]["totals"]["completed"] == 3
        assert second["run"]["totals"]["skipped"] == 37
        assert max(predictions_per_input(stats).values()) == 1

        # An unchanged catalog costs nothing: no submission and no new results table.
        tables = len(list((output / "results").glob("*.parquet")))
        third = await summary_of(catalog_flow(**params))
        assert third["run"] is None and third["changes"]["to_run"] == 0
        assert len(emu.stats()["predictions"]) == 43
        assert len(list((output / "results").glob("*.parquet"))) == tables

    changed = {r["row_key"] for r in all_results(output) if r["status"] == "completed"}
    assert {"SKU-00003", "SKU-00017", "SKU-00031"} <= changed
    assert catalog_changes(manifest, str(output)).unchanged == 40
