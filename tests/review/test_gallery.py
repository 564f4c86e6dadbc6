"""The review gallery: thumbnails next to the results, relative links, escaping, placeholders."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import posixpath
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from fashn_prefect.api import specs
from fashn_prefect.emulator import EmulatorServer
from fashn_prefect.review.gallery import write_gallery
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.run.write import result_row, results_table
from fashn_prefect.store.fs import filesystem, safe_name

RUN = "run-20250101T120000Z-abcdef12"
HOSTILE_KEY = "../../<script>window.__pwned=1</script>/etc/passwd"
HOSTILE_META = '<img src=x onerror="window.__pwned=2">'
HOSTILE_ERROR = "<script>window.__pwned=3</script> no person detected"


def picture(
    body: tuple[int, int, int], size: tuple[int, int] = (300, 400), garment: bool = False
) -> bytes:
    """A small synthetic photo: a figure (or a garment) on a soft gradient."""
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(h):
        shade = 235 - y * 40 // h
        draw.line([(0, y), (w, y)], fill=(shade, shade - 8, shade - 20))
    if garment:
        draw.polygon(
            [(w * 0.2, h * 0.25), (w * 0.4, h * 0.15), (w * 0.6, h * 0.15), (w * 0.8, h * 0.25),
             (w * 0.72, h * 0.38), (w * 0.66, h * 0.33), (w * 0.66, h * 0.85), (w * 0.34, h * 0.85),
             (w * 0.34, h * 0.33), (w * 0.28, h * 0.38)],
            fill=body,
        )  # fmt: skip
    else:
        draw.ellipse([w * 0.38, h * 0.08, w * 0.62, h * 0.28], fill=(224, 178, 140))
        draw.rounded_rectangle([w * 0.28, h * 0.3, w * 0.72, h * 0.7], radius=w // 10, fill=body)
        draw.rectangle([w * 0.33, h * 0.7, w * 0.47, h * 0.95], fill=(55, 65, 81))
        draw.rectangle([w * 0.53, h * 0.7, w * 0.67, h * 0.95], fill=(55, 65, 81))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def spec(row: int, key: str, model: str, inputs: dict[str, Any], **meta: Any) -> RowSpec:
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return RowSpec(row, key, model, inputs, meta, digest, specs.estimate_credits(model, inputs))


@dataclass
class Run:
    """A finished run on disk: its output root and results table."""

    root: Path
    table: pa.Table
    outside: Path  # input images live here, outside the output root


def store_output(root: Path, row: RowSpec, index: int, data: bytes, ext: str = "png") -> str:
    path = root / "images" / f"{safe_name(row.row_key)}-{row.inputs_hash[:8]}-{index}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def make_run(tmp_path: Path, emulator: EmulatorServer) -> Run:
    """Six rows over three models: completed, failed, hostile key, placeholders, a video."""
    root, outside = tmp_path / "out", tmp_path / "inputs"
    outside.mkdir()
    person = outside / "person.png"
    person.write_bytes(picture((96, 165, 250)))
    shirt = emulator.put_file("shirt.png", picture((239, 68, 68), (300, 300), True), "image/png")
    dress = emulator.put_file("dress.png", picture((16, 185, 129), (300, 300), True), "image/png")
    full_data_uri = "data:image/png;base64," + base64.b64encode(picture((250, 204, 21))).decode()
    t0, t1 = "2025-01-01T12:00:00+00:00", "2025-01-01T12:00:09+00:00"
    tryon = "tryon-v1.6"
    rows = []

    first = spec(1, "look-001", tryon, {"model_image": str(person), "garment_image": shirt})
    outs = [store_output(root, first, 0, picture((239, 68, 68)))]
    rows.append(
        result_row(first, "completed", credits_charged=1, output_uris=outs,
                   submitted_at=t0, completed_at=t1, attempts=1, prediction_ids=["p1"])
    )  # fmt: skip

    failed = spec(2, "look-002", tryon, {"model_image": str(person), "garment_image": dress})
    rows.append(
        result_row(failed, "failed", error_name="PredictionFailed", error_message=HOSTILE_ERROR,
                   attempts=3, prediction_ids=["p2"])
    )  # fmt: skip

    hostile = spec(
        3,
        HOSTILE_KEY,
        tryon,
        {"model_image": str(person), "garment_image": dress},
        note=HOSTILE_META,
    )
    outs = [store_output(root, hostile, 0, picture((16, 185, 129)))]
    rows.append(result_row(hostile, "completed", credits_charged=1, output_uris=outs))

    product = {
        "product_image": "https://cdn.fashn.invalid/expired/product.png?X-Amz-Signature=s3cr3t",
        "model_image": emulator.url + "/files/gone.png",
        "prompt": "studio photo, <b>soft</b> light",
        "resolution": "1k",
        "generation_mode": "fast",
        "num_images": 2,
    }
    p2m = spec(4, "s3://bucket/look-004", "product-to-model", product, campaign="spring")
    outs = [
        store_output(root, p2m, i, picture(c))
        for i, c in enumerate([(168, 85, 247), (236, 72, 153)])
    ]
    rows.append(result_row(p2m, "completed", credits_charged=2, output_uris=outs))

    data_row = spec(5, "/abs/look-005", "product-to-model", {"product_image": full_data_uri})
    outs = [store_output(root, data_row, 0, picture((250, 204, 21)))]
    record = result_row(data_row, "completed", credits_charged=1, output_uris=outs)
    record["inputs_json"] = json.dumps({"product_image": full_data_uri})  # an unshortened table
    rows.append(record)

    video = spec(6, "clip-006", "image-to-video", {"image": full_data_uri[:200], "duration": 5})
    outs = [store_output(root, video, 0, b"\x00\x00\x00\x18ftypmp42", "mp4")]
    rows.append(result_row(video, "completed", credits_charged=1, output_uris=outs))

    table = results_table(rows, "abcdef12-flow", datetime(2025, 1, 1, 12, tzinfo=UTC))
    return Run(root, table, outside)


class Page(HTMLParser):
    """Tags with their attributes, and the text of elements by class."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def attrs(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture
def run(tmp_path: Path, fashn_emulator: EmulatorServer) -> Run:
    return make_run(tmp_path, fashn_emulator)


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


def test_page_sits_next_to_results_and_every_link_resolves(run: Run, tmp_path: Path) -> None:
    uri = write_gallery(run.table, str(run.root), RUN)
    page_path = run.root / "results" / f"{RUN}.html"
    assert uri == page_path.as_uri()
    page = Page(page_path.read_text("utf-8"))
    sources = [a["src"] for a in page.attrs("img")]
    # inputs: look-001 x2, look-002 x2, hostile x2, data URI x1; outputs: 1 + 1 + 2 + 1
    assert len(sources) == 12
    for src in sources:
        assert src.startswith("../thumbnails/"), src
        thumb = (page_path.parent / src).resolve()
        assert thumb.parent == (run.root / "thumbnails").resolve()
        with Image.open(thumb) as image:
            assert max(image.size) <= 256
    links = [a["href"] for a in page.attrs("a")]
    assert any(link.endswith(".mp4") for link in links)
    for link in links:
        target = (page_path.parent / link).resolve()
        assert target.is_file() and target.is_relative_to(run.root.resolve()), link
    # nothing written outside the output root; only the three expected folders inside
    outside = files_under(tmp_path) - files_under(run.root) - files_under(run.outside)
    assert not outside
    assert {p.name for p in run.root.iterdir()} == {"images", "results", "thumbnails"}


def test_hostile_text_is_escaped(run: Run) -> None:
    text = Path(write_gallery(run.table, str(run.root), RUN).removeprefix("file://")).read_text()
    assert text.count("<script") == 1  # the page's own
    for raw in (HOSTILE_KEY, HOSTILE_META, HOSTILE_ERROR, "<b>soft</b>"):
        assert raw not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;" in text
    assert "studio photo, &lt;b&gt;soft&lt;/b&gt; light" in text
    page = Page(text)
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]


def test_cards_show_status_error_credits_and_settings(run: Run) -> None:
    text = Path(write_gallery(run.table, str(run.root), RUN).removeprefix("file://")).read_text()
    page = Page(text)
    cards = page.attrs("article")
    assert [c["data-status"] for c in cards] == ["completed", "failed", *["completed"] * 4]
    assert [c["data-model"] for c in cards].count("product-to-model") == 2
    assert {o["value"] for o in page.attrs("option")} == {
        "",
        "tryon-v1.6",
        "product-to-model",
        "image-to-video",
    }
    assert "PredictionFailed" in text
    assert "1 est / 0 charged" in text  # the failed row
    assert "2 est / 2 charged" in text  # product-to-model, 2 images
    assert "<dt>generation_mode</dt><dd>fast</dd>" in text
    assert "<dt>resolution</dt><dd>1k</dd>" in text
    assert "<dt>campaign</dt><dd>spring</dd>" in text
    # placeholders: a remote URL never fetched, an expired loopback URL, a shortened data URI
    assert "remote URL (not fetched)" in text
    assert "URL not available (HTTP 404)" in text
    assert "data URI (shortened in the table)" in text
    assert "▶ video" in text
    assert "https://cdn.fashn.invalid/expired/product.png?…" in text
    assert "s3cr3t" not in text  # query strings (signatures, tokens) are not shown
    assert "api_key" not in text.lower() and "bearer" not in text.lower()


def test_rejects_a_run_name_that_is_a_path(run: Run) -> None:
    for name in ("../evil", "/tmp/x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            write_gallery(run.table, str(run.root), name)
    assert not (run.root / "results").exists()


def test_empty_table(tmp_path: Path) -> None:
    table = results_table([], None, datetime(2025, 1, 1, tzinfo=UTC))
    uri = write_gallery(table, str(tmp_path / "out"), RUN)
    assert "No rows." in Path(uri.removeprefix("file://")).read_text()


def test_a_large_run_shows_failed_rows_first_and_counts_the_whole_run(tmp_path: Path) -> None:
    rows = []
    for i in range(1, 301):
        spec = RowSpec(i, f"sku-{i}", "background-remove", {}, {}, f"h{i}", 2)
        if i % 100 == 0:
            rows.append(result_row(spec, "failed", error_name="PoseError", error_message="x"))
        else:
            rows.append(result_row(spec, "completed", credits_charged=1, output_uris=[]))
    table = results_table(rows, None, datetime(2025, 1, 1, tzinfo=UTC))

    uri = write_gallery(table, str(tmp_path / "out"), RUN, max_rows=50)

    page = Path(uri.removeprefix("file://")).read_text()
    assert "50 of 300 rows shown" in page
    assert "credits 600 estimated / 297 charged" in page  # the whole run's totals
    shown = {key for key in (f"sku-{i}" for i in range(1, 301)) if f">{key}<" in page}
    assert {"sku-100", "sku-200", "sku-300"} <= shown  # every failed row is on the page
    assert len(shown) == 50


@pytest.fixture
def s3_output() -> Iterator[tuple[str, dict[str, Any]]]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
    }
    try:
        fs, _ = filesystem("s3://gallery", **options)
        fs.mkdir("gallery")
        yield "s3://gallery/out", options
    finally:
        server.stop()


def test_gallery_on_object_storage(run: Run, s3_output: tuple[str, dict[str, Any]]) -> None:
    url, options = s3_output
    fs, root = filesystem(url, **options)
    rows = run.table.to_pylist()
    for row in rows:  # move the outputs to S3, as a run with an s3:// output would have them
        moved = []
        for uri in row["output_uris"]:
            name = uri.rsplit("/", 1)[-1]
            fs.pipe_file(f"{root}/images/{name}", Path(uri.removeprefix("file://")).read_bytes())
            moved.append(f"{url}/images/{name}")
        row["output_uris"] = moved
    table = pa.Table.from_pylist(rows, schema=run.table.schema)

    uri = write_gallery(table, url, RUN, options)
    assert uri == f"{url}/results/{RUN}.html"
    page = Page(fs.cat_file(f"{root}/results/{RUN}.html").decode())
    sources = [a["src"] for a in page.attrs("img")]
    assert len(sources) == 12
    for link in [*sources, *(a["href"] for a in page.attrs("a"))]:
        assert fs.exists(posixpath.normpath(f"{root}/results/{link}")), link
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root)) == ["images", "results", "thumbnails"]
