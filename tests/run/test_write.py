"""Writing the results table (fashn_prefect.run.write): Parquet and CSV written in several
batches read back exactly as one write gives them, the CSV's list columns are what
``json.dumps`` writes (escapes included), and result rows stay what they were."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fashn_prefect.api import specs
from fashn_prefect.run import write
from fashn_prefect.run.inputs import shorten_data_uris
from fashn_prefect.run.results_builder import ResultsBuilder
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.run.write import json_lists, result_row, write_results
from fashn_prefect.store.results import read_results

pytestmark = pytest.mark.unit

STARTED = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
AWKWARD = [
    'https://img.example/say-"cheese".png',
    "file:///out/caf\u00e9/\u00fcber.png",
    "s3://bucket/back\\slash/tab\there.png",
    "https://img.example/emoji-\U0001f600.png",
    "https://img.example/del-\x7f-nul-\x00.png",
]


def table_of(n: int, uris: list[str] | None = None) -> pa.Table:
    builder = ResultsBuilder(batch_rows=16)
    for i in range(1, n + 1):
        spec = RowSpec(i, f"row-{i}", "background-remove", {"image": f"{i}.jpg"}, {"k": i}, "h", 1)
        outputs = (
            uris
            if uris is not None and i % 3 == 0
            else [f"file:///out/{i}-{j}.png" for j in range(i % 4)]
        )
        builder.add(
            result_row(spec, "completed", prediction_ids=[f"p-{i}"] * (i % 3), output_uris=outputs)
        )
    return builder.table("flow-1", STARTED)


def written(
    tmp_path: Path, table: pa.Table, name: str, monkeypatch: pytest.MonkeyPatch, rows: int
) -> tuple[pa.Table, bytes]:
    monkeypatch.setattr(write, "PARQUET_ROWS", rows)
    monkeypatch.setattr(write, "CSV_ROWS", rows)
    out = write_results(table, str(tmp_path), name, csv=True)
    assert out.csv is not None
    parquet = pq.read_table(out.parquet.removeprefix("file://"))
    return parquet, Path(out.csv.removeprefix("file://")).read_bytes()


@pytest.mark.parametrize("n", [0, 1, 100])
def test_several_batches_read_back_as_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    table = table_of(n, AWKWARD)

    one_parquet, one_csv = written(tmp_path, table, "one", monkeypatch, rows=1_000_000)
    many_parquet, many_csv = written(tmp_path, table, "many", monkeypatch, rows=7)

    assert many_parquet.equals(one_parquet) and one_parquet.equals(table)
    assert many_csv == one_csv
    assert pq.read_metadata(tmp_path / "results" / "many.parquet").num_row_groups == max(
        1, -(-n // 7)
    )
    # Nothing left beside them: each file was renamed into place.
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "many.csv",
        "many.parquet",
        "one.csv",
        "one.parquet",
    ]


def test_the_csv_list_columns_are_json_dumps_of_each_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = table_of(30, AWKWARD)

    _, csv = written(tmp_path, table, "run", monkeypatch, rows=8)

    read = pacsv.read_csv(
        pa.BufferReader(csv),
        convert_options=pacsv.ConvertOptions(
            column_types={"prediction_ids": pa.string(), "output_uris": pa.string()}
        ),
    )
    for name in ("prediction_ids", "output_uris"):
        expected = [json.dumps(v) for v in table.column(name).to_pylist()]
        assert read.column(name).to_pylist() == expected
        assert [json.loads(v) for v in expected] == table.column(name).to_pylist()
    # As the file holds them: JSON's escapes, then the CSV's doubled quotes.
    text = csv.decode("ascii")
    assert 'say-\\""cheese\\"".png' in text and "caf\\u00e9" in text


@pytest.mark.parametrize(
    "lists",
    [
        [AWKWARD, [], None, ["plain"], [None, "x"], ["a", "b", "c"]],
        [[], []],
        [],
        [None],
    ],
)
def test_json_lists_match_json_dumps(lists: list[list[str | None] | None]) -> None:
    array = pa.array(lists, pa.list_(pa.string()))
    assert json_lists(array).to_pylist() == [json.dumps(v) for v in lists]
    # A slice (as a batch of a bigger table) keeps to its own lists.
    assert json_lists(array.slice(1)).to_pylist() == [json.dumps(v) for v in lists[1:]]


def test_what_reads_results_back_sees_the_batched_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = table_of(50)
    monkeypatch.setattr(write, "PARQUET_ROWS", 8)
    write_results(table, str(tmp_path), "run-1")

    back = read_results(str(tmp_path))

    assert back is not None and back.equals(table)


def reference_row(spec: RowSpec, status: str, **given: Any) -> dict[str, Any]:
    """The result row as it was written before result_row remembered anything."""
    known = spec.model_name in specs.MODELS
    resolved = specs.resolve_inputs(spec.model_name, spec.inputs) if known else {}
    mode = resolved.get("generation_mode") or resolved.get("mode")
    resolution = resolved.get("resolution")
    row = result_row(spec, status, **given)
    assert row["inputs_json"] == json.dumps(
        shorten_data_uris(spec.inputs), sort_keys=True, default=str
    )
    assert row["generation_mode"] == (None if mode is None else str(mode))
    assert row["resolution"] == (None if resolution is None else str(resolution))
    return row


@pytest.mark.parametrize(
    ("model", "inputs"),
    [
        ("tryon-max", {"model_image": "a.jpg", "product_image": "b.jpg"}),
        ("tryon-max", {"model_image": "a.jpg", "product_image": "b.jpg", "resolution": "4k"}),
        ("tryon-v1.6", {"model_image": "a", "garment_image": "b", "mode": "quality"}),
        ("tryon-v1.6", {"model_image": "a", "garment_image": "b", "mode": None}),
        ("product-to-model", {"product_image": "p", "generation_mode": "fast"}),
        ("product-to-model", {"product_image": "p", "resolution": 1}),
        ("product-to-model", {"product_image": "p", "resolution": True}),
        ("edit", {"image": "data:image/png;base64," + "A" * 100, "prompt": "caf\u00e9"}),
        ("not-a-model", {"resolution": "1k"}),
    ],
)
def test_result_rows_are_unchanged_on_repeated_inputs(model: str, inputs: dict[str, Any]) -> None:
    spec = RowSpec(1, "r", model, inputs, {"sku": 3, "status": "x", "none": None}, "h", 2)
    for _ in range(3):  # the second and third come from what result_row remembers
        row = reference_row(spec, "completed", output_uris=["u"], prediction_ids=["p"])
    assert (row["meta_status"], row["sku"], row["none"]) == ("x", "3", None)
    assert row["output_count"] == 1 and row["output_uris"] == ["u"]
