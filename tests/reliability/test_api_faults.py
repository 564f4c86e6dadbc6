"""Scenario 1: a 240-row run through every kind of API fault, then a clean re-run.

Faults: 10% 5xx on run and on status, 5% dropped connections, 3% responses slower than
the client timeout, 3% retryable and 2% permanent runtime failures, three bursts of 429,
and 3% of CDN outputs already gone when first fetched.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from _helpers import (
    check_invariants,
    host_images,
    latest_results,
    specs_of,
    tryon_rows,
    write_manifest,
)
from support import TIME_SCALE, scan_for_secret

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.emulator.config import FaultConfig
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.outcome import summary_of

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

ROWS = 240
FAULTS = FaultConfig(
    run_5xx=0.10,
    status_5xx=0.10,
    drop_connection=0.05,
    slow_response=0.03,
    slow_seconds=2.0,
    runtime_failures={"PipelineError": 0.03, "PoseError": 0.02},
    cdn_gone=0.03,
)
CLIENT_TIMEOUT = 1.0


def _bursts(emu: EmulatorServer, stop: threading.Event, at: tuple[int, ...]) -> list[int]:
    """Inject a burst of 12 forced 429s each time the prediction count passes a mark."""
    done: list[int] = []

    def watch() -> None:
        marks = list(at)
        while marks and not stop.wait(0.1):
            created = len(emu.stats()["predictions"])
            if created >= marks[0]:
                emu.set_faults(rate_limit_burst=12)
                done.append(created)
                marks.pop(0)

    threading.Thread(target=watch, daemon=True, name="burst-injector").start()
    return done


async def test_api_faults_lose_nothing_and_charge_once(
    prefect_harness: None, tmp_path: Path, secret_key: str, all_logs: list[str], report
) -> None:
    with EmulatorServer(
        EmulatorConfig(api_keys=(secret_key,), time_scale=TIME_SCALE, seed=11, faults=FAULTS)
    ) as emu:
        models, garments = host_images(emu, "rel")
        manifest = write_manifest(
            str(tmp_path / "manifest.csv"), tryon_rows(ROWS, models, garments)
        )
        specs = specs_of(manifest)
        output = str(tmp_path / "out")
        creds = FashnCredentials(api_key=secret_key, base_url=emu.url)
        stop = threading.Event()
        bursts = _bursts(emu, stop, (ROWS // 5, ROWS // 2, 4 * ROWS // 5))
        try:
            summary = await summary_of(
                run_manifest(
                    manifest,
                    output,
                    credentials=creds,
                    time_scale=TIME_SCALE,
                    client_timeout=CLIENT_TIMEOUT,
                    shared_limits=False,
                )
            )
        finally:
            stop.set()
        first_stats = emu.stats()
        first = check_invariants(specs, latest_results(output), first_stats, output)

        # A clean re-run that resubmits the ambiguous rows: duplicates it forces are flagged.
        emu.set_faults(
            run_5xx=0,
            status_5xx=0,
            drop_connection=0,
            slow_response=0,
            runtime_failures={},
            rate_limit_burst=0,
        )
        await summary_of(
            run_manifest(
                manifest,
                output,
                credentials=creds,
                time_scale=TIME_SCALE,
                resubmit_ambiguous=True,
                shared_limits=False,
            )
        )
        final_stats = emu.stats()
        final_rows = latest_results(output)
        final = check_invariants(
            specs, final_rows, final_stats, output, before=first_stats, resubmit_ambiguous=True
        )

    faults = first_stats["faults_injected"]
    client_retries = sum("; retry " in line for line in all_logs)
    task_retries = sum("Retry " in line and "will start" in line for line in all_logs)
    leaks = scan_for_secret(secret_key, texts=[*all_logs, repr(summary)], roots=[tmp_path / "out"])
    result = report.scenario("1 API faults")
    fault_total = sum(v for k, v in faults.items() if k != "runtime") + sum(
        faults["runtime"].values()
    )
    result.counts.update(
        {
            "rows": ROWS,
            "faults injected": fault_total,
            "retries": client_retries + task_retries,
            "duplicates": final.double_charged_rows,
            "bytes stored": final.bytes_stored,
        }
    )
    result.figures.update(
        {
            "rows": ROWS,
            "faults": sum(v for k, v in faults.items() if k != "runtime")
            + sum(faults["runtime"].values()),
            **{k: v for k, v in faults.items() if k != "runtime" and v},
            **{f"runtime.{k}": v for k, v in faults["runtime"].items()},
            "bursts_at": bursts,
            "429s": first_stats["rejected"].get("RateLimitExceeded", 0),
            "client_retries": client_retries,
            "task_retries": task_retries,
            **{f"run1.{k}": v for k, v in first.summary().items()},
            "run1.errors": dict(first.errors),
            **{f"rerun.{k}": v for k, v in final.summary().items()},
            "secret_hits": len(leaks),
        }
    )
    result.invariants.update(
        {
            "run1": "ok" if not first.problems else f"{len(first.problems)} violations",
            "rerun": "ok" if not final.problems else f"{len(final.problems)} violations",
            "secret": "ok" if not leaks else "LEAKED",
        }
    )
    assert not first.problems, first.problems[:20]
    assert not final.problems, final.problems[:20]
    assert not leaks, leaks
    # The faults really happened.
    for name in ("run_5xx", "status_5xx", "drop_connection", "slow_response", "cdn_gone"):
        assert faults[name] > 0, (name, faults)
    assert faults["rate_limit_burst"] >= 12
    assert sum(faults["runtime"].values()) > 0
    # Every row has an outcome; only OutputUnavailable and permanent errors stay failed.
    assert Counter(first.statuses).total() == ROWS
    unexpected = [
        (r["row_key"], r["error_name"], r["error_message"])
        for r in final_rows
        if r["status"] == "failed" and r["error_name"] not in ("OutputUnavailable", "PoseError")
    ]
    assert not unexpected, unexpected
    assert final.double_charged_unflagged == 0 and final.unreported_charges == 0
