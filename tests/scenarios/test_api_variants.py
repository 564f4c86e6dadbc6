"""The real API may answer in forms other than the documented one: no paid output is lost.

Each test switches on one emulator variant (issue 11) and runs a manifest through the whole
flow (``run_manifest`` on a Prefect test server, the emulator over loopback HTTP). Every
row must end completed with all its outputs stored, or failed with its real error, and
the credits the results report must match what the emulator charged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import TIME_SCALE, emulator, put_images, results, write_manifest
from PIL import Image

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.jobs.audit import audit
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.store.fs import filesystem

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    server = emulator(seed=11)
    try:
        yield server
    finally:
        server.stop()


def _rows(tmp_path: Path, count: int = 4) -> list[dict[str, Any]]:
    """Rows asking for 1 or 2 outputs each (tryon-max with num_images=2, edit with 1)."""
    images = put_images(str(tmp_path / "images"))
    rows: list[dict[str, Any]] = []
    for i in range(count):
        garment = images["garments"][i % 6]
        if i % 2:
            rows.append(
                {
                    "row_id": f"max-{i}",
                    "model_name": "tryon-max",
                    "model_image": images["models"][i % 3],
                    "product_image": garment,
                    "num_images": 2,
                }
            )
        else:
            rows.append(
                {"row_id": f"edit-{i}", "model_name": "edit", "image": garment, "prompt": f"p{i}"}
            )
    return rows


async def _run(emu: EmulatorServer, tmp_path: Path, rows: list[dict[str, Any]], **kw: Any) -> Any:
    manifest = write_manifest(str(tmp_path / "catalog.csv"), rows)
    options: dict[str, Any] = {
        "manifest": manifest,
        "output": str(tmp_path / "out"),
        "credentials": FashnCredentials(api_key=emu.api_key, base_url=emu.url),
        "time_scale": TIME_SCALE,
        "retries": 1,
        "shared_limits": False,
    }
    options.update(kw)
    summary = await summary_of(run_manifest(**options))
    return summary, {r["row_key"]: r for r in results(summary["results"])}


def _truth(emu: EmulatorServer) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in emu.stats()["predictions"]}


def _assert_all_outputs_stored(table: dict[str, dict[str, Any]], truth: dict[str, Any]) -> None:
    """Every completed prediction's outputs are in storage as decodable images."""
    for row in table.values():
        assert row["status"] == "completed", (row["row_key"], row["error_message"])
        (prediction_id,) = row["prediction_ids"]
        assert row["output_count"] == truth[prediction_id]["output_count"] >= 1
        for uri in row["output_uris"]:
            fs, path = filesystem(uri)
            with fs.open(path, "rb") as handle, Image.open(handle) as image:
                assert image.format == "PNG" and uri.endswith(".png")


async def test_dict_outputs_are_stored_like_a_list(emu: EmulatorServer, tmp_path: Path) -> None:
    emu.set_faults(dict_outputs=True)
    _, table = await _run(emu, tmp_path, _rows(tmp_path))
    truth = _truth(emu)
    _assert_all_outputs_stored(table, truth)
    assert sum(r["output_count"] for r in table.values()) == 6
    assert sum(r["credits_charged"] for r in table.values()) == emu.stats()["credits_charged"]


async def test_a_completed_prediction_short_of_outputs_fails_charged_and_is_audited(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    # Every completed prediction lists one output fewer than asked for: the one-output rows
    # get none at all, the two-output rows get one. All are charged in full.
    emu.set_faults(drop_outputs=1)
    out = str(tmp_path / "out")
    rows = _rows(tmp_path)
    summary, table = await _run(emu, tmp_path, rows)
    truth = _truth(emu)
    assert emu.stats()["credits_charged"] > 0
    for row in table.values():
        (prediction_id,) = row["prediction_ids"]
        assert truth[prediction_id]["status"] == "completed"
        assert (row["status"], row["error_name"]) == ("failed", "OutputMissing")
        assert row["credits_charged"] == truth[prediction_id]["credits"] > 0
        # What did arrive is kept.
        expected = 1 if row["model_name"] == "tryon-max" else 0
        assert row["output_count"] == expected
        assert all(filesystem(u)[0].exists(filesystem(u)[1]) for u in row["output_uris"])
    assert summary["totals"]["completed"] == 0
    assert sum(r["credits_charged"] for r in table.values()) == emu.stats()["credits_charged"]

    report = audit(out)
    nothing = {a.row_key: a for a in report.anomalies if a.kind == "paid_for_nothing"}
    assert set(nothing) == set(table)
    assert sum(a.credits for a in nothing.values()) == emu.stats()["credits_charged"]

    # A re-run reports the rows again and never pays for them a second time.
    before = len(emu.stats()["predictions"])
    _, again = await _run(emu, tmp_path, rows)
    assert len(emu.stats()["predictions"]) == before
    assert {r["error_name"] for r in again.values()} == {"OutputMissing"}
    # ... and the books count the charge once, not once per report.
    assert sum(r["credits_charged"] for r in again.values()) == 0
    assert audit(out).charged == emu.stats()["credits_charged"]


@pytest.mark.parametrize("variant", ["omit_retry_after", "zero_retry_after"])
async def test_rate_limited_without_usable_retry_after_every_row_completes_once(
    tmp_path: Path, variant: str
) -> None:
    # The account allows fewer runs per window than the flow is told (2 per 60 s against
    # 50 per 60 s), and the API's 429s carry no usable Retry-After. Prefect task retries are
    # off: the client alone must wait for the next window instead of giving up.
    server = emulator(seed=12, run_limit=(2, 60.0))
    try:
        server.set_faults(**{variant: True})
        rows = [r for r in _rows(tmp_path, 6) if r["model_name"] == "edit"]
        rows += [{**r, "row_id": f"{r['row_id']}-b", "prompt": "b"} for r in rows]
        _, table = await _run(server, tmp_path, rows, retries=0)
        stats = server.stats()
    finally:
        server.stop()
    assert stats["rejected"]["RateLimitExceeded"] > 0
    assert {r["status"] for r in table.values()} == {"completed"}
    assert all(len(r["prediction_ids"]) == 1 for r in table.values())
    assert len(stats["predictions"]) == len(rows)


def _edits(tmp_path: Path, count: int) -> list[dict[str, Any]]:
    """``count`` edit rows, 1 credit each (fast at 1k when generation_mode is omitted)."""
    garments = put_images(str(tmp_path / "images"))["garments"]
    return [
        {"row_id": f"e-{i:02d}", "model_name": "edit", "image": garments[i % 6], "prompt": f"p{i}"}
        for i in range(count)
    ]


async def test_without_the_credits_header_the_estimate_is_booked_and_audited(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emu.set_faults(omit_credits_header=True)
    rows = _rows(tmp_path)
    summary, table = await _run(emu, tmp_path, rows)
    truth = _truth(emu)
    charged = emu.stats()["credits_charged"]
    for row in table.values():
        (prediction_id,) = row["prediction_ids"]
        assert (row["status"], row["credits_source"]) == ("completed", "estimate")
        # The emulator charges what the catalogue estimates: the booking is exact here.
        assert row["credits_charged"] == row["estimated_credits"] == truth[prediction_id]["credits"]
    assert summary["totals"]["credits_charged"] == charged > 0
    assert summary["totals"]["credits_estimated"] == charged

    report = audit(str(tmp_path / "out"))
    assert report.charged == charged
    assert (report.charged_from_estimates, report.rows_estimated) == (charged, len(rows))

    # With the header back, charges are the API's own again.
    emu.set_faults(omit_credits_header=False)
    more = [{**r, "row_id": f"{r['row_id']}-h", "prompt": "with header"} for r in rows]
    _, again = await _run(emu, tmp_path, more)
    assert {r["credits_source"] for r in again.values()} == {"header"}


async def test_backfill_budget_counts_estimated_charges(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    from fashn_prefect.jobs.backfill import run_backfill
    from fashn_prefect.run.request import RunRequest
    from fashn_prefect.settings import FashnSettings

    emu.set_faults(omit_credits_header=True)
    manifest = write_manifest(str(tmp_path / "history.csv"), _edits(tmp_path, 10))
    request = RunRequest(
        str(tmp_path / "out"),
        credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
        budget=5,
        settings=FashnSettings(time_scale=TIME_SCALE, shared_limits=False),
    )
    first = await run_backfill(manifest, request, chunk_size=2)
    assert first["totals"]["completed"] == 5 == emu.stats()["credits_charged"]
    # The API never reported a charge; the spent budget still counts the estimates, so a
    # second run with the same budget sends nothing.
    again = await run_backfill(manifest, request, chunk_size=2)
    assert again["plan"]["spent_before"] == 5 and again["chunks"] == []
    assert emu.stats()["credits_charged"] == 5 == len(emu.stats()["predictions"])


async def test_a_generic_cdn_content_type_still_saves_images_with_their_real_type(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emu.set_faults(octet_stream_cdn=True)
    _, table = await _run(emu, tmp_path, _rows(tmp_path))
    _assert_all_outputs_stored(table, _truth(emu))  # .png files holding PNGs, none .bin


@pytest.mark.parametrize("end", ["canceled", "time_out"])
async def test_canceled_and_timed_out_predictions_fail_uncharged_with_their_status(
    emu: EmulatorServer, tmp_path: Path, end: str
) -> None:
    emu.set_faults(**{end: 1.0})
    _, table = await _run(emu, tmp_path, _rows(tmp_path))
    truth = _truth(emu)
    assert {p["status"] for p in truth.values()} == {end}
    for row in table.values():
        assert (row["status"], row["error_name"], row["credits_charged"]) == ("failed", end, 0)
        assert row["error_message"] == f"prediction ended as {end}"
        assert all(truth[p]["credits"] == 0 for p in row["prediction_ids"])
    assert sorted(p for r in table.values() for p in r["prediction_ids"]) == sorted(truth)
    assert emu.stats()["credits_charged"] == 0


async def test_a_prediction_forgotten_before_it_is_seen_done_is_ambiguous_never_resent(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    # The API stops tracking a prediction as soon as it ends, before any poll sees it
    # done: its outcome (and any charge) cannot be known, so the row fails as ambiguous
    # and is not submitted again.
    emu.set_faults(forget_after=0.001)
    rows = _rows(tmp_path)
    _, table = await _run(emu, tmp_path, rows)
    truth = _truth(emu)
    for row in table.values():
        assert (row["status"], row["error_name"], row["ambiguous"]) == (
            "failed",
            "AmbiguousSubmission",
            True,
        )
        (prediction_id,) = row["prediction_ids"]
        assert truth[prediction_id]["status"] == "completed"
    _, again = await _run(emu, tmp_path, rows)
    assert len(_truth(emu)) == len(rows)
    assert {r["error_name"] for r in again.values()} == {"AmbiguousSubmission"}


def _new_model_rows(tmp_path: Path, model: str, count: int = 3) -> list[dict[str, Any]]:
    """Rows for a model FASHN shipped after this release: try-on style inputs, 2 outputs."""
    images = put_images(str(tmp_path / "images"))
    return [
        {
            "row_id": f"new-{i}",
            "model_name": model,
            "model_image": images["models"][i % 3],
            "garment_image": images["garments"][i % 6],
            "num_images": 2,
            "meta_sku": f"SKU-{i}",
        }
        for i in range(count)
    ]


async def test_a_model_the_catalogue_does_not_know_runs_as_a_pass_through(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emu.set_faults(accept_unknown_models=True)
    rows = _new_model_rows(tmp_path, "tryon-v9")
    summary, table = await _run(emu, tmp_path, rows)
    truth = _truth(emu)
    assert summary["totals"]["completed"] == len(rows)
    for row in table.values():
        (prediction_id,) = row["prediction_ids"]
        assert truth[prediction_id]["model_name"] == "tryon-v9"
        assert row["output_count"] == truth[prediction_id]["output_count"] == 2
        assert (row["estimated_credits"], row["credits_source"]) == (0, "header")
        assert row["credits_charged"] == truth[prediction_id]["credits"] == 2
        assert row["meta_sku"].startswith("SKU-")  # metadata, not sent as an input
    _assert_all_outputs_stored(table, truth)

    # Without the credits header, the charge of an unknown model is unknown, and the audit
    # says so instead of reading a silent zero.
    emu.set_faults(omit_credits_header=True)
    more = [{**r, "row_id": f"{r['row_id']}-b", "num_images": 1} for r in rows]
    _, again = await _run(emu, tmp_path, more)
    assert {(r["status"], r["credits_source"]) for r in again.values()} == {
        ("completed", "unknown")
    }
    assert audit(str(tmp_path / "out")).rows_charge_unknown == len(more)


async def test_unknown_models_can_be_forbidden(emu: EmulatorServer, tmp_path: Path) -> None:
    from fashn_prefect import ManifestInvalid

    emu.set_faults(accept_unknown_models=True)
    rows = _new_model_rows(tmp_path, "tryon-v9", 2)
    with pytest.raises(ManifestInvalid) as caught:
        await _run(emu, tmp_path, rows, allow_unknown_models=False)
    problems = caught.value.report.errors
    assert [(p.row, p.column) for p in problems] == [(1, "model_name"), (2, "model_name")]
    assert "unknown model 'tryon-v9'" in problems[0].message
    assert emu.stats()["predictions"] == []


@pytest.fixture
def catalogue_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A catalogue data file named by FASHN_PREFECT_MODELS; the catalogue is restored after."""
    from fashn_prefect.api import specs

    saved = dict(specs.builtin._REGISTRY)
    path = tmp_path / "models.json"
    monkeypatch.setenv("FASHN_PREFECT_MODELS", str(path))
    try:
        yield path
    finally:
        specs.builtin._REGISTRY.clear()
        specs.builtin._REGISTRY.update(saved)


async def test_a_new_model_added_as_data_is_validated_and_estimated(
    emu: EmulatorServer, tmp_path: Path, catalogue_file: Path
) -> None:
    import json

    from fashn_prefect import ManifestInvalid

    model = {
        "inputs": {
            "model_image": {"type": "image", "required": True},
            "garment_image": {"type": "image", "required": True},
            "num_images": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
        },
        "output_count_field": "num_images",
        "credits": {"per_output": 3},
        "latency_seconds": [4, 8],
    }
    catalogue_file.write_text(json.dumps({"models": {"tryon-v10": model}}))
    rows = _new_model_rows(tmp_path, "tryon-v10")
    # Fully checked now: meta_* columns are metadata, and a bad count is refused.
    with pytest.raises(ManifestInvalid) as caught:
        await _run(emu, tmp_path, [{**rows[0], "num_images": 9}])
    assert caught.value.report.errors[0].column == "num_images"
    summary, table = await _run(emu, tmp_path, rows)
    assert summary["totals"]["completed"] == len(rows)
    for row in table.values():
        assert row["estimated_credits"] == row["credits_charged"] == 6
        assert row["credits_source"] == "header" and row["output_count"] == 2


async def test_keys_of_one_account_share_its_in_flight_limit(tmp_path: Path) -> None:
    # The API counts in-flight predictions per account, across all its keys. Two runs with
    # two keys of one account, started together, hold the account's limit together.
    import asyncio
    import uuid

    keys = (f"fa-one-{uuid.uuid4().hex[:10]}", f"fa-two-{uuid.uuid4().hex[:10]}")
    account = f"shop-{uuid.uuid4().hex[:8]}"
    server = emulator(api_keys=keys, time_scale=0.05, max_in_flight=3, seed=13)
    server.set_faults(account_concurrency=True)
    images = put_images(str(tmp_path / "images"))

    def run(key: str, name: str) -> Any:
        rows = [
            {
                "row_id": f"{name}-{i}",
                "model_name": "tryon-v1.6",
                "model_image": images["models"][i % 3],
                "garment_image": images["garments"][i % 6],
                "mode": "quality",  # 12-17 s: long enough to fill the account's slots
                "seed": i,
            }
            for i in range(6)
        ]
        return run_manifest(
            manifest=write_manifest(str(tmp_path / f"{name}.csv"), rows),
            output=str(tmp_path / f"out-{name}"),
            credentials=FashnCredentials(api_key=key, base_url=server.url, account=account),
            time_scale=0.05,
            max_in_flight=3,
            shared_limits=True,
        )

    try:
        summaries = await asyncio.gather(run(keys[0], "a"), run(keys[1], "b"))
        stats = server.stats()
    finally:
        server.stop()
    assert stats["rejected"]["ConcurrencyLimitExceeded"] == 0
    # Never past the account's limit; with a leased server slot per prediction on the
    # test server's SQLite, whether it is reached exactly depends on the machine's load.
    assert 2 <= stats["peak_in_flight"] <= 3
    assert len(stats["predictions"]) == 12
    for summary in summaries:
        assert {r["status"] for r in results(summary["results"])} == {"completed"}
