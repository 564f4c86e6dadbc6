"""Collect a completed prediction's outputs into object storage right away.

FASHN deletes CDN outputs 72 h after completion and base64 outputs after 60 minutes, so
each output is downloaded as soon as the prediction completes and written atomically
under ``{output}/images/{row}-{inputs}-{index}.{ext}``.

What a prediction cost comes from the ``x-fashn-credits-used`` header of its terminal
status. The header is documented but not guaranteed: without it, a completed prediction
is booked at the specs' estimate (``credits_source="estimate"``), or as unknown for a
model the specs do not describe, so budgets and audits never read a silent zero.

A completed prediction is charged for the outputs it was asked for. When it reports fewer
(none, an undocumented ``output`` form, or fewer than ``num_images``/``num_samples``), the
outputs it did return are still stored, and :func:`missing_outputs` names the shortfall so
the row is recorded as failed with ``OutputMissing`` instead of silently "completed".
"""

from __future__ import annotations

from fashn_prefect.api import specs
from fashn_prefect.api.responses import PredictionStatus
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.store.fs import atomic_write, join, safe_name
from fashn_prefect.store.records import Attempt


def image_stem(spec: RowSpec, status: PredictionStatus) -> str:
    """The name stem of a row's stored outputs: ``{row key}-{inputs hash}`` for a manifest
    row, the prediction id for a task's prediction (which has no row key)."""
    if spec.row_key:
        return f"{safe_name(spec.row_key)}-{spec.inputs_hash[:8]}"
    return safe_name(status.id)


def image_path(rt: Runtime, stem: str, index: int, extension: str) -> str:
    """Where output ``index`` is stored; the name cannot leave the images folder."""
    return join(rt.images_root, f"{stem}-{index}.{extension.lstrip('.')}")


async def collect_outputs(rt: Runtime, spec: RowSpec, status: PredictionStatus) -> list[str]:
    """Download every output of ``status`` and store it; return the stored URIs in order.

    Without an output root (a task called without ``output``) nothing is downloaded: the
    API's own references are returned (CDN URLs expire after 72 h, base64 after 60 min).
    """
    refs = list(status.output or [])
    if rt.fs is None:
        return refs
    stem = image_stem(spec, status)
    uris: list[str] = []
    for index, ref in enumerate(refs):
        fetched = await rt.client.fetch_output(ref)
        path = image_path(rt, stem, index, fetched.extension)
        await rt.store("storing an output image", atomic_write, rt.fs, path, fetched.data)
        uris.append(rt.uri(path))
    return uris


def missing_outputs(spec: RowSpec, status: PredictionStatus, stored: int) -> str | None:
    """Why a completed prediction's outputs fall short of what was paid for, or None."""
    expected = specs.output_count(spec.model_name, spec.inputs)
    if status.output_problem:
        return (
            f"the API reported the prediction completed, but its output was "
            f"{status.output_problem}; {stored} of {expected} outputs stored"
        )
    if stored < expected:
        return (
            f"the API reported the prediction completed with {stored} of the {expected} "
            "outputs requested; credits were charged for outputs that never arrived"
        )
    return None


def charged_credits(spec: RowSpec, status: PredictionStatus) -> tuple[int, str | None]:
    """``(credits, source)`` to book for a terminal prediction.

    ``source`` is ``"header"`` when the API reported the charge, ``"estimate"`` when a
    completed prediction came without the header (the specs' estimate is booked), and
    ``"unknown"`` when neither is available; None when nothing was charged or reported.
    """
    if status.credits_used is not None:
        return status.credits_used, "header"
    if not status.is_completed:
        return 0, None  # failed, canceled and timed-out predictions are not charged
    if spec.model_name in specs.MODELS:
        return spec.estimated_credits, "estimate"
    return 0, "unknown"


def credits_source(attempts: list[Attempt]) -> str | None:
    """The weakest source among a row's attempts: unknown < estimate < header."""
    sources = {a.credits_source for a in attempts}
    for source in ("unknown", "estimate", "header"):
        if source in sources:
            return source
    return None
