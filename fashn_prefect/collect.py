"""Collect a completed prediction's outputs into object storage right away.

FASHN deletes CDN outputs 72 h after completion and base64 outputs after 60 minutes, so
each output is downloaded as soon as the prediction completes and written atomically
under ``{output}/images/{row}-{inputs}-{index}.{ext}``.

A completed prediction is charged for the outputs it was asked for. When it reports fewer
(none, an undocumented ``output`` form, or fewer than ``num_images``/``num_samples``), the
outputs it did return are still stored, and :func:`missing_outputs` names the shortfall so
the row is recorded as failed with ``OutputMissing`` instead of silently "completed".
"""

from __future__ import annotations

from fashn_prefect import catalogue
from fashn_prefect.client import PredictionStatus
from fashn_prefect.runtime import Runtime
from fashn_prefect.storage import atomic_write, join, safe_name
from fashn_prefect.validate import RowSpec


def image_path(rt: Runtime, spec: RowSpec, index: int, extension: str) -> str:
    """Where output ``index`` of a row is stored; the name cannot leave the images folder."""
    name = f"{safe_name(spec.row_key)}-{spec.inputs_hash[:8]}-{index}.{extension.lstrip('.')}"
    return join(rt.images_root, name)


async def collect_outputs(rt: Runtime, spec: RowSpec, status: PredictionStatus) -> list[str]:
    """Download every output of ``status`` and store it; return the stored URIs in order."""
    uris: list[str] = []
    for index, ref in enumerate(status.output or []):
        fetched = await rt.client.fetch_output(ref)
        path = image_path(rt, spec, index, fetched.extension)
        await rt.store("storing an output image", atomic_write, rt.fs, path, fetched.data)
        uris.append(rt.uri(path))
    return uris


def missing_outputs(spec: RowSpec, status: PredictionStatus, stored: int) -> str | None:
    """Why a completed prediction's outputs fall short of what was paid for, or None."""
    expected = catalogue.output_count(spec.model_name, spec.inputs)
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
