"""Collect a completed prediction's outputs into object storage right away.

FASHN deletes CDN outputs 72 h after completion and base64 outputs after 60 minutes, so
each output is downloaded as soon as the prediction completes and written atomically
under ``{output}/images/{row}-{inputs}-{index}.{ext}``.
"""

from __future__ import annotations

from fashn_prefect.api.client import PredictionStatus
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.store.fs import atomic_write, join, safe_name


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
