"""A self-contained HTML review page for a run, next to its results table.

``{output}/results/{run_name}.html`` shows one card per row: input thumbnails beside output
thumbnails, status, error, credits, model and settings, with filters by status and model.
Thumbnails go under ``{output}/thumbnails/`` and are linked relatively, so the page works
from disk, a copied output root or object storage. No external assets; a per-page CSP
nonce means only the page's own script runs. All table text is HTML-escaped.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from string import Template
from typing import Any
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from fashn_prefect.api import specs
from fashn_prefect.review.thumbnails import Unreadable, make_thumbnail, read_source
from fashn_prefect.store.fs import atomic_write, filesystem, join, safe_name
from fashn_prefect.store.results import CORE_COLUMNS, RESULTS_DIR, STATUSES

THUMBNAILS_DIR = "thumbnails"
GALLERY_ROWS = 1_000
"""Rows a review page shows at most: a catalog run of a million rows gets a page (and
thumbnails) for a thousand of them, failed rows first; the results table has them all."""
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov")
_SHOWN = {"generation_mode", "mode", "resolution"}  # inputs already shown resolved
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

_TEMPLATE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' data:; \
style-src 'nonce-$nonce'; script-src 'nonce-$nonce'; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<title>$run_name · FASHN review</title>
<style nonce="$nonce">
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  background:#f3f4f6;color:#111827}
.top{position:sticky;top:0;z-index:1;background:#111827;color:#f9fafb;padding:12px 20px;
  display:flex;flex-wrap:wrap;gap:8px 20px;align-items:center}
.top h1{font-size:17px;margin:0}.top .sum{color:#9ca3af}
#status-filter{display:flex;gap:6px}
.filters{display:flex;gap:6px;align-items:center;flex-wrap:wrap;margin-left:auto}
.filters button,.filters select{font:inherit;border:1px solid #4b5563;background:#1f2937;
  color:#e5e7eb;border-radius:999px;padding:3px 11px;cursor:pointer}
.filters button[aria-pressed=true]{background:#f9fafb;color:#111827;border-color:#f9fafb}
.shown{color:#9ca3af;min-width:9em;text-align:right}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:16px;padding:20px}
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px 14px;
  display:flex;flex-direction:column;gap:10px;min-width:0}
.card header{display:flex;gap:8px;align-items:center}
.row{color:#6b7280}.key{font-family:ui-monospace,monospace;overflow:hidden;text-overflow:ellipsis;
  white-space:nowrap;flex:1}
.status{border-radius:999px;padding:1px 9px;font-size:12px;font-weight:600;background:#e5e7eb}
.s-completed{background:#d1fae5;color:#065f46}.s-failed{background:#fee2e2;color:#991b1b}
.s-invalid{background:#fef3c7;color:#92400e}.s-skipped{background:#e0e7ff;color:#3730a3}
.media{display:flex;gap:14px}.media section{flex:1 1 auto;min-width:0}
.media section+section{border-left:1px solid #e5e7eb;padding-left:14px}
h3{margin:0 0 4px;font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:#6b7280}
.tiles{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;width:96px}figure a{display:block;text-decoration:none}
figure img,.ph{display:flex;width:96px;height:120px;object-fit:contain;border-radius:6px;
  background:#f9fafb;border:1px solid #e5e7eb}
.ph{align-items:center;justify-content:center;text-align:center;padding:6px;font-size:11px;
  color:#6b7280;border-style:dashed}.ph.video{font-size:14px;color:#1d4ed8}
figcaption{font-size:11px;color:#6b7280;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.none{margin:0;color:#9ca3af;font-size:12px}
.error{margin:0;padding:6px 8px;border-radius:6px;background:#fef2f2;color:#991b1b;
  overflow-wrap:anywhere}
dl{margin:0;display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:12px}
dt{color:#6b7280}dd{margin:0;overflow-wrap:anywhere}
</style></head><body>
<div class="top"><h1>$run_name</h1><span class="sum">$summary</span>
<div class="filters"><span id="status-filter">$chips</span>
<select id="model-filter" aria-label="model">$options</select>
<span class="shown"><span id="shown">$total</span> of $total shown</span></div></div>
<main id="cards">$cards</main>
<script nonce="$nonce">
(function () {
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var chips = Array.prototype.slice.call(document.querySelectorAll("#status-filter button"));
  var model = document.getElementById("model-filter");
  var status = "";
  function apply() {
    var shown = 0;
    cards.forEach(function (card) {
      var ok = (!status || card.dataset.status === status) &&
        (!model.value || card.dataset.model === model.value);
      card.hidden = !ok;
      if (ok) { shown += 1; }
    });
    document.getElementById("shown").textContent = String(shown);
    chips.forEach(function (chip) {
      chip.setAttribute("aria-pressed", String(chip.dataset.status === status));
    });
  }
  chips.forEach(function (chip) {
    chip.addEventListener("click", function () { status = chip.dataset.status; apply(); });
  });
  model.addEventListener("change", apply);
  apply();
})();
</script></body></html>
""")


@dataclass
class Tile:
    """One picture on a card: a thumbnail, or a labelled placeholder."""

    label: str
    source: str
    row_key: str
    kind: str = "image"  # "image" | "video"
    thumb: str | None = None  # relative link to the thumbnail
    link: str | None = None  # relative link to the full-size file
    note: str = ""  # placeholder label


def write_gallery(
    table: pa.Table,
    output_url: str,
    run_name: str,
    storage_options: dict[str, Any] | None = None,
    *,
    fetch_remote: bool = False,
    workers: int = 8,
    max_rows: int = GALLERY_ROWS,
) -> str:
    """Write the review page for ``table`` and its thumbnails; return the page's URI.

    Inputs at non-loopback URLs are shown as placeholders unless ``fetch_remote``. A run
    of more than ``max_rows`` rows shows that many (failed rows first, then in order);
    the page says so, and its credit totals are the whole run's.
    """
    if not _RUN_NAME.fullmatch(run_name):
        raise ValueError(f"run name {run_name!r} is not a plain file name")
    options = storage_options or {}
    fs, root = filesystem(output_url, **options)
    root_uri = str(fs.unstrip_protocol(root)).rstrip("/")
    rows = _shown(table, max_rows)
    cards = [(row, *_tiles(row, root_uri)) for row in rows]

    def thumbnail(tile: Tile) -> None:
        try:
            data, ext = make_thumbnail(read_source(tile.source, options, fetch_remote))
        except Unreadable as exc:
            tile.note = str(exc)
            return
        digest = hashlib.sha256(tile.source.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"{safe_name(f'{tile.row_key}-{tile.label}', 60)}-{digest}.{ext}"
        atomic_write(fs, join(root, THUMBNAILS_DIR, name), data)
        tile.thumb = f"../{THUMBNAILS_DIR}/{name}"

    pending = [t for _, ins, outs in cards for t in (*ins, *outs) if t.kind == "image"]
    # One thumbnail per distinct source: manifests reuse the same photos across many rows.
    first: dict[str, Tile] = {}
    for tile in pending:
        first.setdefault(tile.source, tile)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(thumbnail, first.values()))
    for tile in pending:
        tile.thumb, tile.note = first[tile.source].thumb, first[tile.source].note

    page = _render(run_name, rows, [_card(row, ins, outs) for row, ins, outs in cards], table)
    path = join(root, RESULTS_DIR, f"{run_name}.html")
    atomic_write(fs, path, page.encode("utf-8"))
    return str(fs.unstrip_protocol(path))


def _tiles(row: dict[str, Any], root_uri: str) -> tuple[list[Tile], list[Tile]]:
    key = str(row.get("row_key") or row.get("row"))
    inputs = _inputs(row)
    images = _image_fields(row.get("model_name"), inputs)
    ins = [Tile(name, inputs[name], key) for name in images]
    outs = []
    for index, uri in enumerate(row.get("output_uris") or []):
        kind = "video" if uri.lower().endswith(VIDEO_EXTENSIONS) else "image"
        outs.append(Tile(f"output {index + 1}", uri, key, kind, link=_relative(uri, root_uri)))
    return ins, outs


def _inputs(row: dict[str, Any]) -> dict[str, Any]:
    try:
        inputs = json.loads(row.get("inputs_json") or "{}")
    except ValueError:
        return {}
    return inputs if isinstance(inputs, dict) else {}


def _image_fields(model_name: Any, inputs: dict[str, Any]) -> list[str]:
    spec = specs.MODELS.get(model_name) if isinstance(model_name, str) else None
    names = []
    for name, value in inputs.items():
        field = spec.field(name) if spec else None
        is_image = field.type == "image" if field else "image" in name
        if is_image and isinstance(value, str) and value:
            names.append(name)
    return names


def _relative(uri: str, root_uri: str) -> str | None:
    """``../<path>`` for a URI under the output root, else None (never leaves the root)."""
    if not uri.startswith(root_uri + "/"):
        return None
    inner = uri[len(root_uri) + 1 :]
    if posixpath.normpath(inner) != inner or inner.startswith(("/", "..")):
        return None
    return "../" + quote(inner, safe="/")


def _short(value: Any, limit: int = 120) -> str:
    """Display text: data URIs cut; URL credentials and query strings (signatures) dropped."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        host = parts.netloc.rpartition("@")[2]
        text = f"{parts.scheme}://{host}{parts.path}{'?…' if parts.query else ''}"
    if text.startswith("data:") and len(text) > 40:
        return f"{text[:32]}…"
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _card(row: dict[str, Any], ins: list[Tile], outs: list[Tile]) -> str:
    status = str(row.get("status") or "unknown")
    model = str(row.get("model_name") or "unknown")
    inputs = _inputs(row)
    images = {t.label for t in ins}
    settings: list[tuple[str, Any]] = [
        ("model", model),
        ("generation_mode", row.get("generation_mode")),
        ("resolution", row.get("resolution")),
        (
            "credits",
            f"{row.get('estimated_credits') or 0} est / {row.get('credits_charged') or 0} charged",
        ),
        ("attempts", row.get("attempts")),
        ("latency", f"{row['latency_s']:.1f} s" if row.get("latency_s") is not None else None),
        ("prediction_ids", ", ".join(row.get("prediction_ids") or [])),
        *((k, v) for k, v in sorted(inputs.items()) if k not in images and k not in _SHOWN),
        *((k, v) for k, v in row.items() if k not in CORE_COLUMNS and v not in (None, "")),
    ]
    error = ""
    if row.get("error_name") or row.get("error_message"):
        error = (
            f'<p class="error"><b>{_e(row.get("error_name") or "error")}</b> '
            f"{_e(row.get('error_message') or '')}</p>"
        )
    details = "".join(
        f"<dt>{_e(k)}</dt><dd>{_e(_short(v))}</dd>" for k, v in settings if v not in (None, "")
    )
    return (
        f'<article class="card" data-status="{_e(status)}" data-model="{_e(model)}">'
        f'<header><span class="row">#{_e(row.get("row"))}</span>'
        f'<span class="key" title="{_e(row.get("row_key"))}">{_e(row.get("row_key"))}</span>'
        f'<span class="status s-{status if status in STATUSES else "other"}">{_e(status)}</span>'
        "</header>"
        f'<div class="media"><section><h3>Inputs</h3><div class="tiles">{_tiles_html(ins)}</div>'
        f'</section><section><h3>Outputs</h3><div class="tiles">{_tiles_html(outs)}</div>'
        f"</section></div>{error}<dl>{details}</dl></article>"
    )


def _tiles_html(tiles: list[Tile]) -> str:
    if not tiles:
        return '<p class="none">none</p>'
    parts = []
    for t in tiles:
        if t.thumb:
            body = f'<img src="{_e(t.thumb)}" alt="{_e(t.label)}" loading="lazy">'
        elif t.kind == "video":
            body = '<span class="ph video">▶ video</span>'
        else:
            body = f'<span class="ph">{_e(t.note or "no preview")}</span>'
        if t.link:
            body = f'<a href="{_e(t.link)}" target="_blank" rel="noopener">{body}</a>'
        parts.append(
            f'<figure title="{_e(_short(t.source, 300))}">{body}'
            f"<figcaption>{_e(t.label)}</figcaption></figure>"
        )
    return "".join(parts)


def _shown(table: pa.Table, max_rows: int) -> list[dict[str, Any]]:
    """The rows the page shows: all of them, or ``max_rows`` (failed rows first)."""
    if table.num_rows <= max_rows:
        return list(table.to_pylist())
    failed = pc.fill_null(pc.equal(table["status"], "failed"), False)
    first = table.filter(failed).slice(0, max_rows)
    rest = table.filter(pc.invert(failed)).slice(0, max_rows - first.num_rows)
    shown = first.to_pylist() + rest.to_pylist()
    return sorted(shown, key=lambda row: row.get("row") or 0)


def _render(run_name: str, rows: list[dict[str, Any]], cards: list[str], table: pa.Table) -> str:
    statuses = Counter(str(r.get("status") or "unknown") for r in rows)
    models = sorted({str(r.get("model_name") or "unknown") for r in rows})
    chips = f'<button type="button" data-status="">all ({len(rows)})</button>' + "".join(
        f'<button type="button" data-status="{_e(s)}">{_e(s)} ({n})</button>'
        for s, n in sorted(statuses.items())
    )
    options = '<option value="">all models</option>' + "".join(
        f'<option value="{_e(m)}">{_e(m)}</option>' for m in models
    )
    not_skipped = pc.fill_null(pc.not_equal(table["status"], "skipped"), True)
    estimated = pc.sum(table.filter(not_skipped)["estimated_credits"]).as_py() or 0
    charged = pc.sum(table["credits_charged"]).as_py() or 0
    total = table.num_rows
    count = f"{total} rows" if len(rows) == total else f"{len(rows)} of {total} rows shown"
    return _TEMPLATE.substitute(
        nonce=secrets.token_urlsafe(16),
        run_name=_e(run_name),
        summary=_e(f"{count} · credits {estimated} estimated / {charged} charged"),
        chips=chips,
        options=options,
        total=len(rows),
        cards="".join(cards) or '<p class="none">No rows.</p>',
    )


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)
