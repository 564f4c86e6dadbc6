"""The columnar checks clear exactly the rows the per-row checks find valid, with the same
keys, hashes and estimates; every problem is still worded by the per-row checks."""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashn_prefect.run.columnar import clear_rows
from fashn_prefect.run.manifest import read_manifest, rows_manifest
from fashn_prefect.run.valid_rows import TextColumn, ValidRows
from fashn_prefect.run.validate import ValidationReport, validate_manifest

pytestmark = pytest.mark.unit

URLS = [
    "https://cdn.example.com/a.jpg",
    "http://img.example.com/p/q?x=1&y=2",
    "https://cdn.example.com/a b.jpg",  # a space: invalid
    "https:///no-host.jpg",  # no host: invalid
    "HTTPS://cdn.example.com/upper.jpg",  # not http(s) as written: invalid
    "https://[::1/broken.jpg",  # an unclosed IPv6 host
    'https://cdn.example.com/"quoted".jpg',
    "https://cdn.example.com/café.jpg",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:image/png;base64,",
    "saved:my-model",
    "  ",
    "",
    None,
]
INTEGERS = [
    "1",
    " 2 ",
    "+3",
    "4",
    "5",
    "0",
    "-1",
    "x",
    "1.5",
    "٣",
    "99999999999999999999",
    "",
    None,
]
BOOLEANS = ["true", "False", " yes ", "0", "maybe", "", None]
TEXTS = ["a red dress", 'say "hi"', "back\\slash", "naïve", "\u3000", "   ", "", None]


def random_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def pick(values: list[Any]) -> Any:
        """Mostly the first (good) value, else any: most rows are valid, many are not."""
        return values[0] if rng.random() < 0.85 else rng.choice(values)

    rows = []
    for i in range(n):
        model = rng.choice(
            [
                "tryon-v1.6",
                "tryon-v1.6",
                "product-to-model",
                "edit",
                "background-remove",
                "background-change",  # deprecated: a warning on every row
                "image-to-video",
                "my-new-model",  # not in the specs: a pass-through
                " tryon-v1.6 ",
                "Not A Model!",
                "",
            ]
        )
        row: dict[str, Any] = {
            "row_id": rng.choice([f"sku-{i}", f"sku-{i}", f"sku-{i % 7}", "", None]),
            "model_name": model,
            "model_image": pick(URLS),
            "garment_image": pick(URLS),
            "product_image": pick(URLS),
            "image": pick(URLS),
            "end_image": rng.choice([None, None, None, URLS[0]]),
            # An image that is billed when given (product-to-model's surcharge).
            "face_reference": rng.choice([None, None, URLS[0], URLS[1]]),
            "mode": rng.choice(["balanced", "quality", "fast", "", None]),
            "num_samples": pick(INTEGERS),
            "num_images": pick(INTEGERS),
            "duration": rng.choice(["5", "10", "7", None]),
            "resolution": rng.choice(["1k", "720p", "1080p", None]),
            "segmentation_free": pick(BOOLEANS),
            "prompt": pick(TEXTS),
            "collection": rng.choice(["spring", "", None]),
        }
        rows.append(row)
    return rows


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in rows[0]]))


def summary(report: ValidationReport) -> dict[str, Any]:
    return {
        "problems": [str(p) for p in report.problems],
        "invalid": sorted(report.invalid_rows),
        "specs": list(report.rows),
        "credits": report.estimated_credits,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_columnar_manifest_validates_like_the_rows_one_by_one(seed: int) -> None:
    rows = random_rows(600, seed)
    columnar = rows_manifest(table_of(rows))
    one_by_one = rows_manifest(rows)
    assert columnar.table is not None and one_by_one.table is None
    fast = validate_manifest(columnar, check_images=False)
    slow = validate_manifest(one_by_one, check_images=False)
    assert summary(fast) == summary(slow)
    assert 100 < len(fast.rows) < 500  # the mix has valid and invalid rows
    cleared, _ = clear_rows(columnar.table, None)
    assert len(cleared.positions) > 50  # and many were cleared in columns


def test_most_rows_of_a_clean_catalog_are_cleared_in_columns() -> None:
    rows = [
        {
            "row_id": f"sku-{i}",
            "model_name": "tryon-v1.6",
            "model_image": f"https://cdn.example.com/m/{i}.jpg",
            "garment_image": f"https://cdn.example.com/g/{i}.jpg",
            "num_samples": str(1 + i % 4),
            "mode": "quality",
            "season": "spring",
        }
        for i in range(300)
    ]
    cleared, left = clear_rows(table_of(rows), None)
    assert left == [] and cleared.positions == list(range(300))
    assert cleared.credits == [1 + i % 4 for i in range(300)]
    reference = validate_manifest(rows_manifest(rows), check_images=False)
    assert cleared.hashes == [spec.inputs_hash for spec in reference.rows]


def test_parquet_typed_columns_validate_like_the_rows(tmp_path: Any) -> None:
    table = pa.table(
        {
            "model_name": ["tryon-v1.6"] * 5,
            "model_image": ["https://cdn.example.com/m.jpg"] * 5,
            "garment_image": [f"https://cdn.example.com/{i}.jpg" for i in range(5)],
            "num_samples": pa.array([1.0, 2.0, None, 2.5, 9.0]),  # pandas' ints with gaps
            "segmentation_free": pa.array([True, False, None, True, False]),
            "seed_like": pa.array([1, 2, 3, 4, 5]),
        }
    )
    path = tmp_path / "m.parquet"
    pq.write_table(table, path)
    columnar = read_manifest(str(path))
    fast = validate_manifest(columnar, check_images=False)
    slow = validate_manifest(rows_manifest(list(columnar.rows)), check_images=False)
    assert summary(fast) == summary(slow)
    assert sorted(fast.invalid_rows) == [4, 5]  # 2.5 is not an integer, 9 is out of range


def test_a_csv_manifest_is_cleared_in_columns_too(tmp_path: Any) -> None:
    """pandas reads CSV text as large_string; the manifest keeps it as string, so a CSV
    catalog gets the columnar checks and the same report as row by row."""
    rows = random_rows(300, 7)
    path = tmp_path / "m.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(table_of(rows), path)
    columnar = read_manifest(str(path))
    assert columnar.table is not None
    cleared, _ = clear_rows(columnar.table, None)
    assert len(cleared.positions) > 50  # not one row by one (as with large_string text)
    one_by_one = rows_manifest(list(columnar.rows))
    fast = validate_manifest(columnar, check_images=False)
    assert summary(fast) == summary(validate_manifest(one_by_one, check_images=False))


def test_valid_rows_held_in_small_chunks_read_back_as_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Keys and hashes are kept as Arrow chunks: rows on either side of a chunk's end,
    # read by index (from either end), in order, or as columns, are the rows validated.
    monkeypatch.setattr(TextColumn, "CHUNK_ROWS", 7)
    rows = random_rows(300, 4)
    fast = validate_manifest(rows_manifest(table_of(rows)), check_images=False)
    slow = validate_manifest(rows_manifest(rows), check_images=False)
    specs, expected = fast.rows, list(slow.rows)
    assert isinstance(specs, ValidRows) and len(specs) > 14
    assert list(specs) == expected
    assert [specs[i] for i in range(len(specs))] == expected
    assert [specs[-i] for i in range(1, len(specs) + 1)] == expected[::-1]
    assert specs.keys == [s.row_key for s in expected]
    assert specs.hash_column().to_pylist() == [s.inputs_hash for s in expected]
    assert specs.key_column().to_pylist() == specs.keys
