"""Charges and validation outcomes hard-coded from FASHN's documentation, not from our code.

Every other credit check compares the product with itself (the emulator charges with the
product's own catalogue). This table is written by hand from the docs pages and does not
import ``fashn_prefect.api.specs``: each entry names the page it comes from (and the section
of /work/shared/reference/fashn-api.md that quotes it). Three end-to-end checks hold the
code to it:

* the emulator, over HTTP, charges each configuration exactly the documented credits
  (``x-fashn-credits-used``) for the documented number of outputs, and refuses each
  documented invalid configuration with 400 ``BadRequest`` without creating a prediction;
* the product's estimate (``validate_manifest`` of a CSV manifest) is the documented charge,
  and each invalid configuration is an invalid row naming the column;
* a flow run reports, per row, ``estimated_credits`` and ``credits_charged`` equal to it.

Rules quoted (reference §5, "Credits and pricing"): charged per successful output, so
``num_images`` / ``num_samples`` multiply the per-output cost; ``face_reference`` adds 3 per
output; the generation_mode x resolution grid (fast 1/2/3, balanced 2/3/4, quality 3/4/5 at
1k/2k/4k); an omitted ``generation_mode`` is billed fast at 1k and balanced at 2k/4k
(tryon-max: balanced, it has no fast mode); image-to-video 480p/720p/1080p = 1/3/6 for 5 s,
doubled for 10 s; tryon-v1.6 and background-remove 1 per output, whatever the ``mode``.

Left out on purpose: ``packshot`` (no docs page gives its price: [UNCONFIRMED]) and
model-create with ``face_reference`` at 4k (the docs say the face reference caps the output
at 2K but not how such a request is billed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    api_client,
    emulator,
    host_images,
    results,
    wait_terminal,
    write_manifest,
)

from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.flows import run_manifest
from fashn_prefect.run.manifest import read_manifest
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.run.validate import validate_manifest

DOCS = "https://docs.fashn.ai"
FUNDAMENTALS = f"{DOCS}/api-overview/api-fundamentals (reference §5)"
TIME_SCALE = 0.005  # emulated latencies up to 240 s (10 s video) become about a second

# Placeholders, replaced by images hosted on the emulator.
PERSON, GARMENT, FACE = "<person>", "<garment>", "<face>"


@dataclass(frozen=True)
class Charge:
    """A valid configuration and what the docs say it costs."""

    case: str
    model_name: str
    inputs: dict[str, Any]
    outputs: int
    credits: int
    source: str


@dataclass(frozen=True)
class Refusal:
    """A configuration the docs say is invalid, and the input that makes it so."""

    case: str
    model_name: str
    inputs: dict[str, Any]
    column: str
    source: str = field(default="")


def _page(slug: str, section: str) -> str:
    return f"{DOCS}/api-reference/{slug} ({section})"


CHARGES: list[Charge] = [
    # tryon-max: balanced 2/3/4, quality 3/4/5; omitted mode billed as balanced.
    Charge(
        "tryon-max defaults",
        "tryon-max",
        {"model_image": PERSON, "product_image": GARMENT},
        1,
        2,
        _page("tryon-max", "Credit Cost; reference §4.1, §5"),
    ),
    Charge(
        "tryon-max 2k, mode omitted",
        "tryon-max",
        {"model_image": PERSON, "product_image": GARMENT, "resolution": "2k"},
        1,
        3,
        _page("tryon-max", "Credit Cost; reference §5"),
    ),
    Charge(
        "tryon-max quality 4k x2",
        "tryon-max",
        {
            "model_image": PERSON,
            "product_image": GARMENT,
            "generation_mode": "quality",
            "resolution": "4k",
            "num_images": 2,
        },
        2,
        10,
        _page("tryon-max", "Credit Cost; reference §5"),
    ),
    # tryon-v1.6: 1 per output image, num_samples 1-4; mode changes speed, not price.
    Charge(
        "tryon-v1.6 defaults",
        "tryon-v1.6",
        {"model_image": PERSON, "garment_image": GARMENT},
        1,
        1,
        _page("tryon-v1-6", "Credits; reference §4.2, §5"),
    ),
    Charge(
        "tryon-v1.6 quality x3",
        "tryon-v1.6",
        {"model_image": PERSON, "garment_image": GARMENT, "mode": "quality", "num_samples": 3},
        3,
        3,
        _page("tryon-v1-6", "Credits; reference §5"),
    ),
    # The six grid models.
    Charge(
        "product-to-model defaults (fast 1k)",
        "product-to-model",
        {"product_image": GARMENT},
        1,
        1,
        _page("product-to-model", "Credit Cost; reference §4.3, §5"),
    ),
    Charge(
        "product-to-model 2k, mode omitted (balanced)",
        "product-to-model",
        {"product_image": GARMENT, "resolution": "2k"},
        1,
        3,
        _page("product-to-model", "Credit Cost; reference §5"),
    ),
    Charge(
        "product-to-model quality 4k x2",
        "product-to-model",
        {
            "product_image": GARMENT,
            "generation_mode": "quality",
            "resolution": "4k",
            "num_images": 2,
        },
        2,
        10,
        _page("product-to-model", "Credit Cost; reference §5"),
    ),
    Charge(
        "product-to-model face_reference x2",
        "product-to-model",
        {"product_image": GARMENT, "face_reference": FACE, "num_images": 2},
        2,
        8,
        _page("product-to-model", "Credit Cost: +3 per image with face_reference; §5"),
    ),
    Charge(
        "model-create defaults (fast 1k)",
        "model-create",
        {"prompt": "a model in a white t-shirt"},
        1,
        1,
        _page("model-create", "Credit Cost; reference §4.4, §5"),
    ),
    Charge(
        "model-create balanced 1k + face_reference",
        "model-create",
        {"prompt": "a model", "generation_mode": "balanced", "face_reference": FACE},
        1,
        5,
        _page("model-create", "Credit Cost; reference §5"),
    ),
    Charge(
        "model-swap 4k, mode omitted + face_reference",
        "model-swap",
        {"model_image": PERSON, "resolution": "4k", "face_reference": FACE},
        1,
        7,
        _page("model-swap", "Credit Cost; reference §4.5, §5"),
    ),
    Charge(
        "face-to-model quality 2k",
        "face-to-model",
        {"face_image": FACE, "generation_mode": "quality", "resolution": "2k"},
        1,
        4,
        _page("face-to-model", "Credit Cost; reference §4.6, §5"),
    ),
    Charge(
        "edit fast 4k x3",
        "edit",
        {
            "image": GARMENT,
            "prompt": "make it blue",
            "generation_mode": "fast",
            "resolution": "4k",
            "num_images": 3,
        },
        3,
        9,
        _page("edit", "Credit Cost; reference §4.7, §5"),
    ),
    Charge(
        "reframe balanced 1k x4",
        "reframe",
        {"image": GARMENT, "aspect_ratio": "16:9", "generation_mode": "balanced", "num_images": 4},
        4,
        8,
        _page("reframe", "Credit Cost; reference §4.8, §5"),
    ),
    Charge(
        "background-remove",
        "background-remove",
        {"image": GARMENT},
        1,
        1,
        _page("background-remove", "Credits; reference §4.9, §5"),
    ),
    Charge(
        "background-change (deprecated)",
        "background-change",
        {"image": GARMENT, "prompt": "a beach"},
        1,
        1,
        _page("background-change", "Credits (deprecated page); reference §3, §5"),
    ),
    # image-to-video: one MP4; 5 s at 480p/720p/1080p = 1/3/6, 10 s doubles.
    Charge(
        "image-to-video defaults (5 s, 1080p)",
        "image-to-video",
        {"image": PERSON},
        1,
        6,
        _page("image-to-video", "Credits; reference §4.10, §5"),
    ),
    *[
        Charge(
            f"image-to-video {duration} s {resolution}",
            "image-to-video",
            {"image": PERSON, "duration": duration, "resolution": resolution},
            1,
            credits,
            _page("image-to-video", "Credits: 480p 1, 720p 3, 1080p 6, duration 10 = 2x"),
        )
        for duration, resolution, credits in (
            (5, "480p", 1),
            (5, "720p", 3),
            (10, "480p", 2),
            (10, "720p", 6),
            (10, "1080p", 12),
        )
    ],
]

REFUSALS: list[Refusal] = [
    Refusal(
        "tryon-max has no fast mode",
        "tryon-max",
        {"model_image": PERSON, "product_image": GARMENT, "generation_mode": "fast"},
        "generation_mode",
        _page("tryon-max", "generation_mode: balanced | quality; reference §4.1"),
    ),
    Refusal(
        "num_images above 4",
        "product-to-model",
        {"product_image": GARMENT, "num_images": 5},
        "num_images",
        _page("product-to-model", "num_images 1-4; reference §4.3"),
    ),
    Refusal(
        "num_images of 0",
        "edit",
        {"image": GARMENT, "prompt": "p", "num_images": 0},
        "num_images",
        _page("edit", "num_images 1-4; reference §4.7"),
    ),
    Refusal(
        "num_samples above 4",
        "tryon-v1.6",
        {"model_image": PERSON, "garment_image": GARMENT, "num_samples": 5},
        "num_samples",
        _page("tryon-v1-6", "num_samples 1-4; reference §4.2"),
    ),
    Refusal(
        "tryon-v1.6 mode is performance | balanced | quality",
        "tryon-v1.6",
        {"model_image": PERSON, "garment_image": GARMENT, "mode": "fast"},
        "mode",
        _page("tryon-v1-6", "mode; reference §4.2"),
    ),
    Refusal(
        "resolution 8k",
        "model-swap",
        {"model_image": PERSON, "resolution": "8k"},
        "resolution",
        _page("model-swap", "resolution 1k | 2k | 4k; reference §4"),
    ),
    Refusal(
        "video duration is 5 or 10",
        "image-to-video",
        {"image": PERSON, "duration": 7},
        "duration",
        _page("image-to-video", "duration 5 | 10; reference §4.10"),
    ),
    Refusal(
        "video resolution 4k",
        "image-to-video",
        {"image": PERSON, "resolution": "4k"},
        "resolution",
        _page("image-to-video", "resolution 480p | 720p | 1080p; reference §4.10"),
    ),
    Refusal(
        "end_image only with 1080p",
        "image-to-video",
        {"image": PERSON, "end_image": GARMENT, "resolution": "720p"},
        "end_image",
        _page("image-to-video", "end_image: only with 1080p; reference §4.10"),
    ),
    Refusal(
        "reframe needs aspect_ratio",
        "reframe",
        {"image": GARMENT},
        "aspect_ratio",
        _page("reframe", "aspect_ratio required; reference §4.8"),
    ),
    Refusal(
        "edit needs a prompt",
        "edit",
        {"image": GARMENT},
        "prompt",
        _page("edit", "prompt required; reference §4.7"),
    ),
    Refusal(
        "seed above 4294967295",
        "edit",
        {"image": GARMENT, "prompt": "p", "seed": 4294967296},
        "seed",
        _page("edit", "seed 0-4294967295; reference §4 common enums, §9"),
    ),
    Refusal(
        "aspect_ratio outside the documented list",
        "reframe",
        {"image": GARMENT, "aspect_ratio": "7:3"},
        "aspect_ratio",
        _page("reframe", "aspect_ratio; reference §4 common enums"),
    ),
    Refusal(
        "deprecated model_image with face_reference",
        "product-to-model",
        {"product_image": GARMENT, "model_image": PERSON, "face_reference": FACE},
        "model_image",
        _page("product-to-model", "model_image: cannot be combined with face_reference"),
    ),
]


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorServer]:
    with emulator(seed=17, time_scale=TIME_SCALE) as server:
        yield server


@pytest.fixture(scope="module")
def images(emu: EmulatorServer) -> dict[str, str]:
    models, garments = host_images(emu, "oracle")
    return {PERSON: models[0], GARMENT: garments[0], FACE: models[1]}


def _real(inputs: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    return {k: images.get(v, v) if isinstance(v, str) else v for k, v in inputs.items()}


def _manifest(path: Path, cases: list[Any], images: dict[str, str]) -> str:
    rows = [
        {"row_id": f"case-{i:02d}", "model_name": c.model_name, **_real(c.inputs, images)}
        for i, c in enumerate(cases)
    ]
    return write_manifest(path, rows)


def test_the_table_covers_every_model_and_multiplier() -> None:
    models = {c.model_name for c in CHARGES}
    assert models >= {
        "tryon-max",
        "tryon-v1.6",
        "product-to-model",
        "model-create",
        "model-swap",
        "face-to-model",
        "edit",
        "reframe",
        "background-remove",
        "image-to-video",
    }
    given = {k for c in CHARGES for k in c.inputs}
    assert given >= {
        "num_images",
        "num_samples",
        "resolution",
        "generation_mode",
        "face_reference",
        "duration",
        "mode",
    }
    assert all(c.source.startswith(DOCS) for c in [*CHARGES, *REFUSALS])


@pytest.mark.parametrize("charge", CHARGES, ids=lambda c: c.case)
def test_the_emulator_charges_what_the_docs_say(
    emu: EmulatorServer, images: dict[str, str], charge: Charge
) -> None:
    body = {"model_name": charge.model_name, "inputs": _real(charge.inputs, images)}
    with api_client(emu) as client:
        response = client.post("/v1/run", json=body)
        assert response.status_code == 200, response.text
        final = wait_terminal(client, response.json()["id"], timeout=30)
    assert final.json()["status"] == "completed", final.json()
    assert len(final.json()["output"]) == charge.outputs
    assert int(final.headers["x-fashn-credits-used"]) == charge.credits, charge.source


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.case)
def test_the_emulator_refuses_what_the_docs_call_invalid(
    emu: EmulatorServer, images: dict[str, str], refusal: Refusal
) -> None:
    before = len(emu.stats()["predictions"])
    body = {"model_name": refusal.model_name, "inputs": _real(refusal.inputs, images)}
    with api_client(emu) as client:
        response = client.post("/v1/run", json=body)
    assert response.status_code == 400, (response.text, refusal.source)
    assert response.json()["error"] == "BadRequest"
    assert refusal.column in response.json()["message"]
    assert len(emu.stats()["predictions"]) == before


def test_the_product_estimates_what_the_docs_say(tmp_path: Path, images: dict[str, str]) -> None:
    manifest = _manifest(tmp_path / "charges.csv", CHARGES, images)
    report = validate_manifest(read_manifest(manifest))
    assert report.ok, report.format()
    estimated = {spec.row_key: spec.estimated_credits for spec in report.rows}
    documented = {f"case-{i:02d}": c.credits for i, c in enumerate(CHARGES)}
    assert estimated == documented


def test_the_product_refuses_what_the_docs_call_invalid(
    tmp_path: Path, images: dict[str, str]
) -> None:
    manifest = _manifest(tmp_path / "refusals.csv", REFUSALS, images)
    report = validate_manifest(read_manifest(manifest))
    assert report.rows == []
    for row, refusal in enumerate(REFUSALS, start=1):
        columns = {p.column for p in report.invalid_rows.get(row, []) if p.level == "error"}
        assert refusal.column in columns, (refusal.case, report.invalid_rows.get(row))


@pytest.mark.usefixtures("prefect_harness")
async def test_a_flow_run_reports_the_documented_charges(
    emu: EmulatorServer, images: dict[str, str], tmp_path: Path
) -> None:
    summary = await summary_of(
        run_manifest(
            manifest=_manifest(tmp_path / "charges.csv", CHARGES, images),
            output=str(tmp_path / "out"),
            credentials=FashnCredentials(api_key=emu.api_key, base_url=emu.url),
            time_scale=TIME_SCALE,
            shared_limits=False,
        )
    )
    table = {r["row_key"]: r for r in results(summary["results"])}
    for i, charge in enumerate(CHARGES):
        row = table[f"case-{i:02d}"]
        assert row["status"] == "completed", (charge.case, row["error_name"])
        got = (row["estimated_credits"], row["credits_charged"], row["output_count"])
        assert got == (charge.credits, charge.credits, charge.outputs), charge.case
