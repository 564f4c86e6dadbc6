"""Scenario 2: SIGKILL the ``fashn-prefect run`` process at six moments, re-running each time.

The CLI runs in its own session (with Prefect's ephemeral server in a private
PREFECT_HOME); the whole process group is killed while it submits, while it polls, while
it collects outputs and right around the results-table write. After the kills, a run to
completion, then a run with ``--resubmit-ambiguous``; both must satisfy the invariants.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    check_invariants,
    host_images,
    latest_results,
    results_files,
    specs_of,
    tryon_rows,
    write_manifest,
)
from support import (
    TIME_SCALE,
    audit_tree,
    cli_env,
    kill_session,
    scan_for_secret,
    session_processes,
)
from typer.testing import CliRunner

from fashn_prefect.cli import app
from fashn_prefect.emulator import EmulatorConfig, EmulatorServer
from fashn_prefect.store.fs import filesystem

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

ROWS = 150
CLI = str(Path(sys.executable).with_name("fashn-prefect"))


def _start(manifest: str, output: str, env: dict[str, str], log: Path, *extra: str) -> Any:
    handle = log.open("ab")
    return subprocess.Popen(
        [
            CLI,
            "run",
            manifest,
            "--output",
            output,
            "--time-scale",
            str(TIME_SCALE),
            "--quiet",
            *extra,
        ],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _count(root: Path, folder: str) -> int:
    base = root / folder
    return sum(1 for p in base.iterdir() if not p.name.startswith(".")) if base.exists() else 0


async def test_sigkill_at_random_moments_then_resume(
    tmp_path: Path, secret_key: str, report
) -> None:
    rng = random.Random(2027)
    out = tmp_path / "out"
    home = tmp_path / "prefect-home"
    home.mkdir()
    log = tmp_path / "cli.log"
    kills: list[dict[str, Any]] = []
    with EmulatorServer(
        EmulatorConfig(api_keys=(secret_key,), time_scale=TIME_SCALE, seed=23)
    ) as emu:
        models, garments = host_images(emu, "rel")
        manifest = write_manifest(
            str(tmp_path / "manifest.csv"), tryon_rows(ROWS, models, garments)
        )
        specs = specs_of(manifest)
        env = cli_env(home, emu.url, secret_key)

        def created() -> int:
            return len(emu.stats()["predictions"])

        def status_calls() -> int:
            return sum(v["status"] for v in emu.stats()["requests"].values())

        # (phase, trigger built from the state when the attempt starts)
        def after_new_predictions(n: int) -> Callable[[], Callable[[], bool]]:
            def build() -> Callable[[], bool]:
                start = created()
                return lambda: created() >= start + n

            return build

        def after_status_calls(n: int) -> Callable[[], Callable[[], bool]]:
            def build() -> Callable[[], bool]:
                start = status_calls()
                return lambda: status_calls() >= start + n

            return build

        def after_new_files(folder: str, n: int) -> Callable[[], Callable[[], bool]]:
            def build() -> Callable[[], bool]:
                start = _count(out, folder)
                return lambda: _count(out, folder) >= start + n

            return build

        def when_all_collected() -> Callable[[], bool]:
            return lambda: _count(out, "images") >= ROWS - 2

        plan: list[tuple[str, Callable[[], Callable[[], bool]]]] = [
            ("submitting", after_new_predictions(rng.randint(3, 12))),
            ("polling", after_status_calls(rng.randint(20, 60))),
            ("collecting", after_new_files("images", rng.randint(5, 20))),
            ("submitting", after_new_predictions(rng.randint(15, 40))),
            ("writing table", lambda: when_all_collected),
            ("after table", after_new_files("results", 1)),
        ]
        for phase, build in plan:
            trigger = build()
            proc = _start(manifest, str(out), env, log)
            deadline = time.monotonic() + 240
            while proc.poll() is None and not trigger() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.15))
            finished = proc.poll() is not None
            kill_session(proc, signal.SIGKILL)
            assert not session_processes(proc.pid), "processes survived the kill"
            kills.append(
                {
                    "phase": phase,
                    "killed": not finished,
                    "predictions": created(),
                    "images": _count(out, "images"),
                    "tables": len(results_files(str(out))),
                }
            )
            # Whatever the moment, nothing visible is partial or corrupt.
            fs, root = filesystem(str(out))
            audit_tree(fs, root)

        final_proc = _start(manifest, str(out), env, log)
        final_code = final_proc.wait(timeout=300)
        stats = emu.stats()
        final_rows = latest_results(str(out))
        failed = [r for r in final_rows if r["status"] == "failed"]
        # Exit 1 means exactly "some rows failed" (see fashn_prefect.cli); here only rows
        # whose POST a kill interrupted may fail (checked below): at most one per lane
        # (6) per kill, since a row is submitted only while it holds a lane.
        assert final_code == (1 if failed else 0), log.read_text()[-3000:]
        assert len(failed) <= 6 * sum(1 for k in kills if k["killed"]), failed
        final = check_invariants(specs, final_rows, stats, str(out))
        resubmit = _start(manifest, str(out), env, log, "--resubmit-ambiguous")
        assert resubmit.wait(timeout=300) == 0, log.read_text()[-3000:]
        after_stats = emu.stats()
        after = check_invariants(
            specs,
            latest_results(str(out)),
            after_stats,
            str(out),
            before=stats,
            resubmit_ambiguous=True,
        )

    fs, root = filesystem(str(out))
    tree = audit_tree(fs, root)
    # The private PREFECT_HOME holds the ephemeral server's database: logs, artifacts, states.
    leaks = scan_for_secret(secret_key, texts=[log.read_text(errors="replace")], roots=[out, home])
    result = report.scenario("2 SIGKILL + resume")
    killed = [k for k in kills if k["killed"]]
    result.counts.update(
        {
            "rows": ROWS,
            "faults injected": f"{len(killed)} kills",
            "retries": f"{len(plan) + 2} runs",
            "duplicates": after.double_charged_rows,
            "bytes stored": after.bytes_stored,
        }
    )
    result.figures.update(
        {
            "rows": ROWS,
            "kills": len(killed),
            "phases": "/".join(k["phase"] for k in killed),
            "predictions": len(stats["predictions"]),
            **{f"final.{k}": v for k, v in final.summary().items()},
            **{f"resubmit.{k}": v for k, v in after.summary().items()},
            "tables": tree.get("parquet", 0),
            "secret_hits": len(leaks),
        }
    )
    result.invariants.update(
        {
            "final": "ok" if not final.problems else f"{len(final.problems)} violations",
            "resubmit": "ok" if not after.problems else f"{len(after.problems)} violations",
            "storage": "ok",
            "secret": "ok" if not leaks else "LEAKED",
        }
    )
    assert len(killed) >= 5, kills
    assert not final.problems, final.problems[:20]
    assert not after.problems, after.problems[:20]
    assert not leaks, leaks
    # Only rows whose submission's fate a kill made unknown may fail, and they say so.
    assert all(r["ambiguous"] for r in final_rows if r["status"] == "failed"), [
        (r["row_key"], r["error_name"]) for r in final_rows if r["status"] == "failed"
    ]
    assert after.statuses["failed"] == 0
    assert after.double_charged_unflagged == 0 and after.unreported_charges == 0


def test_kill_during_a_held_post_then_finish_with_the_flag(tmp_path: Path, secret_key: str) -> None:
    """SIGKILL lands while the emulator holds one row's ``POST /v1/run`` (the prediction
    exists, its id never reached the client). The re-run names the row and
    ``--resubmit-ambiguous``; running with that flag completes it."""
    out = str(tmp_path / "out")
    home = tmp_path / "prefect-home"
    home.mkdir()
    log = tmp_path / "cli.log"
    with EmulatorServer(
        EmulatorConfig(api_keys=(secret_key,), time_scale=TIME_SCALE, seed=29)
    ) as emu:
        image = host_images(emu, "held")[1][0]
        rows = [
            {"row_id": f"calm-{i}", "model_name": "edit", "image": image, "prompt": f"look {i}"}
            for i in range(2)
        ]
        rows.append(
            {
                "row_id": "held-row",
                "model_name": "edit",
                "image": image,
                "prompt": "emulator-fault:hold_run",
            }
        )
        manifest = write_manifest(str(tmp_path / "manifest.csv"), rows)
        env = cli_env(home, emu.url, secret_key)

        def settled() -> bool:
            """The held POST is in flight, and the other rows' ids are in the ledger."""
            if not emu.stats()["faults_injected"]["hold_run"]:
                return False
            ledger = Path(out) / "ledger"
            records = [json.loads(p.read_text()) for p in ledger.glob("calm-*.json")]
            return len(records) == 2 and all(r["status"] != "submitting" for r in records)

        proc = _start(manifest, out, env, log)
        deadline = time.monotonic() + 240
        while proc.poll() is None and not settled():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the kill"
        kill_session(proc, signal.SIGKILL)
        assert len(emu.stats()["predictions"]) == 3  # the held row's prediction exists

        rerun = subprocess.run(
            [CLI, "run", manifest, "--output", out, "--time-scale", str(TIME_SCALE), "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert rerun.returncode == 1, rerun.stdout + rerun.stderr
        said = " ".join(rerun.stdout.split())  # rich wraps long lines
        assert "held-row" in said and "--resubmit-ambiguous" in said, said
        assert "at most one extra charge per row" in said, said
        assert len(emu.stats()["predictions"]) == 3  # the re-run did not guess
        status = {r["row_key"]: r for r in latest_results(out)}
        assert status["held-row"]["error_name"] == "AmbiguousSubmission"
        assert status["held-row"]["interrupted_at"] is not None

        finish = _start(manifest, out, env, log, "--resubmit-ambiguous")
        assert finish.wait(timeout=300) == 0, log.read_text()[-3000:]
        final = {r["row_key"]: r for r in latest_results(out)}
        assert final["held-row"]["status"] == "completed" and final["held-row"]["ambiguous"]
        assert len(emu.stats()["predictions"]) == 4  # exactly one more submission

    # The audit is not fooled by the kill: the re-run booked the calm rows' charges, which
    # the balance had lost before it started; nothing of a finished run is unexplained.
    audit = CliRunner().invoke(app, ["audit", out, "--json", "--no-write"])
    assert audit.exit_code == 0, audit.output
    report = json.loads(audit.stdout)
    assert report["anomalies"] == [] and report["unexplained"] == 0
    assert [r["charged_before_run"] for r in report["runs"]] == [2, 0]
