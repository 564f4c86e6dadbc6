"""Prepare a row's inputs for the API: local and object-storage images become data URIs.

Following FASHN's preprocessing advice, images read from paths are resized so their
longest edge is at most 2000 px (6000 px for 4k-capable models) and sent as JPEG at
quality 95 (PNG when the image has transparency). URLs, data URIs and ``saved:`` model
references are sent unchanged.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image, ImageOps

from fashn_prefect.api import specs
from fashn_prefect.store.fs import filesystem

_REMOTE = ("http://", "https://", "data:", "saved:")


def is_path(value: Any) -> bool:
    """True when an image value is a local or object-storage path rather than a URL."""
    return isinstance(value, str) and not value.startswith(_REMOTE)


def prepare_inputs(
    model_name: str, inputs: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return the inputs to send: image paths replaced by resized data URIs.

    For a model the specs do not describe, inputs named like images
    (:func:`~fashn_prefect.api.specs.is_image_input_name`) are the image inputs, sized for
    the 2000 px edge FASHN advises for most endpoints.
    """
    spec = specs.MODELS.get(model_name)
    prepared = dict(inputs)
    for name, value in inputs.items():
        if spec is None:
            is_image, max_edge = specs.is_image_input_name(name), 2000
        else:
            field = spec.field(name)
            is_image, max_edge = field is not None and field.type == "image", spec.max_input_edge
        if is_image and is_path(value):
            prepared[name] = image_to_data_uri(value, max_edge, storage_options)
    return prepared


def image_to_data_uri(
    path: str, max_edge: int = 2000, storage_options: dict[str, Any] | None = None
) -> str:
    """Read an image from any fsspec path and encode it as a ``data:image/...;base64,`` URI."""
    fs, inner = filesystem(path, **(storage_options or {}))
    with fs.open(inner, "rb") as handle:
        opened = Image.open(io.BytesIO(handle.read()))
        opened.load()
    image: Image.Image = ImageOps.exif_transpose(opened)
    if max(image.size) > max_edge:
        image.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image.save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def shorten_data_uris(inputs: dict[str, Any], keep: int = 32) -> dict[str, Any]:
    """Copy of ``inputs`` with long data URIs cut to a short prefix (for tables and logs)."""
    short: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, str) and value.startswith("data:") and len(value) > keep:
            short[name] = f"{value[:keep]}...<{len(value)} chars>"
        else:
            short[name] = value
    return short
