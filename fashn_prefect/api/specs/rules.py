"""What the specs say about one prediction: validation, defaults, output count, credits,
latency and output format; and the generic checks for models the specs do not know."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fashn_prefect.api.specs.builtin import (
    ASPECT,
    GENERIC_LATENCY,
    GRID_LATENCY_BY,
    MODELS,
    VERTICAL_ASPECT,
)
from fashn_prefect.api.specs.types import InputField, ModelSpec, Problem, given, is_int
from fashn_prefect.errors import UnknownModel


def get_model(name: str) -> ModelSpec:
    """The spec of ``name``; raises :class:`UnknownModel` listing the known names."""
    spec = MODELS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownModel(name, list(MODELS))
    return spec


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: object) -> str:
    return type(value).__name__


_DATA_URI = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,")
_IMAGE_EXPECTED = "an http(s) URL or a data:image/<format>;base64,<data> URI"


def image_value_problem(f: InputField, value: str) -> str | None:
    """Why ``value`` is not a well-formed image input for field ``f`` (None when it is)."""
    if value.startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
        except ValueError as exc:  # an unbalanced IPv6 bracket in the host
            return f"must be {_IMAGE_EXPECTED}: {exc} (got {_show(value)})"
        if parts.netloc and not any(c.isspace() for c in value):
            return None
        return f"must be {_IMAGE_EXPECTED}: URL has no host or contains spaces (got {_show(value)})"
    if value.startswith("data:"):
        m = _DATA_URI.match(value)
        if m is None:
            return f"data URI must start with data:image/<format>;base64, (got {_show(value[:40])})"
        if len(value) == m.end():
            return "data URI has an empty base64 payload"
        return None
    if f.allow_saved and value.startswith("saved:"):
        if value[len("saved:") :].strip():
            return None
        return "saved:<name> needs a model name after 'saved:'"
    expected = _IMAGE_EXPECTED + (", or saved:<name>" if f.allow_saved else "")
    return f"must be {expected} (got {_show(value)})"


def _field_problems(f: InputField, value: Any) -> list[str]:
    """Problems with one given (non-None) value."""
    if f.type == "boolean":
        if not isinstance(value, bool):
            return [f"must be a boolean (got {_type_name(value)} {_show(value)})"]
        return []
    if f.type == "integer":
        if not is_int(value):
            return [f"must be an integer (got {_type_name(value)} {_show(value)})"]
    elif not isinstance(value, str):
        kind = "an image reference (string)" if f.type == "image" else "a string"
        return [f"must be {kind} (got {_type_name(value)} {_show(value)})"]
    out: list[str] = []
    if isinstance(value, str) and f.required and not value.strip():
        return ["is required and must not be empty"]
    if f.type == "image":
        msg = image_value_problem(f, value)
        if msg:
            out.append(msg)
    if f.enum is not None and value not in f.enum:
        note = f"; {f.enum_note}" if f.enum_note else ""
        choices = ", ".join(str(v) for v in f.enum)
        out.append(f"must be one of: {choices} (got {_show(value)}){note}")
    if f.type == "integer":
        lo, hi = f.minimum, f.maximum
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            out.append(f"must be between {lo} and {hi} (got {_show(value)})")
    return out


CROSS_FIELD_INPUTS: dict[str, tuple[str, ...]] = {
    "image-to-video": ("end_image",),
    "product-to-model": ("model_image",),
    "model-create": ("face_reference",),
    "face-to-model": ("aspect_ratio",),
}
"""For each model with rules across fields, the inputs whose presence brings them into
play: a row giving none of them meets its model's cross-field rules (the columnar checks
in :mod:`fashn_prefect.run.columnar` rely on this; keep it next to the rules)."""


def _cross_field_problems(spec: ModelSpec, inputs: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    name = spec.name
    if name == "image-to-video" and given(inputs, "end_image"):
        res = inputs.get("resolution") or "1080p"
        if res != "1080p":
            out.append(
                Problem("end_image", f"is only allowed with resolution 1080p (got {_show(res)})")
            )
    if name == "product-to-model" and given(inputs, "model_image"):
        clash = [
            k
            for k in ("image_prompt", "background_reference", "face_reference")
            if given(inputs, k)
        ]
        if clash:
            out.append(Problem("model_image", f"cannot be combined with {', '.join(clash)}"))
        out.append(
            Problem("model_image", "is deprecated on product-to-model; use tryon-max", "warning")
        )
    if (
        name == "model-create"
        and given(inputs, "face_reference")
        and inputs.get("resolution") == "4k"
    ):
        out.append(
            Problem(
                "resolution",
                "face_reference caps model-create output at 2k; 4k is produced and billed as 2k",
                "warning",
            )
        )
    if name == "face-to-model":
        ratio = inputs.get("aspect_ratio")
        if isinstance(ratio, str) and ratio in ASPECT and ratio not in VERTICAL_ASPECT:
            out.append(
                Problem(
                    "aspect_ratio",
                    f"face-to-model documents only vertical ratios "
                    f"({', '.join(VERTICAL_ASPECT)}) (got {ratio!r})",
                    "warning",
                )
            )
    return out


def validate(model_name: str, inputs: Mapping[str, Any]) -> list[Problem]:
    """Every problem with ``inputs`` for ``model_name`` (errors and warnings), never just the first."""
    spec = MODELS.get(model_name) if isinstance(model_name, str) else None
    if spec is None:
        return [Problem(None, str(UnknownModel(model_name, list(MODELS))))]
    if not isinstance(inputs, Mapping):
        return [Problem(None, f"inputs must be a mapping (got {_type_name(inputs)})")]
    problems: list[Problem] = []
    if spec.lifecycle == "deprecated":
        problems.append(
            Problem(
                None,
                f"model {spec.name!r} is deprecated; use {spec.replacement!r} instead",
                "warning",
            )
        )
    for f in spec.fields:
        value = inputs.get(f.name)
        if value is None:
            if f.required:
                problems.append(Problem(f.name, f"is required ({f.type}) but missing"))
            continue
        problems.extend(Problem(f.name, m) for m in _field_problems(f, value))
    known = {f.name for f in spec.fields}
    for key in inputs:
        if key not in known:
            problems.append(
                Problem(
                    str(key),
                    f"is not a documented input of {spec.name}; it will be sent as-is",
                    "warning",
                )
            )
    problems.extend(_cross_field_problems(spec, inputs))
    return problems


def resolve_inputs(model_name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` with documented defaults filled in for fields not given (None = not given)."""
    spec = get_model(model_name)
    out = {k: v for k, v in inputs.items() if v is not None}
    for f in spec.fields:
        if f.name in out or f.default is None:
            continue
        if f.default_requires and f.default_requires not in out:
            continue
        if f.default_unless and f.default_unless in out:
            continue
        out[f.name] = f.default
    return out


def output_count(model_name: str, inputs: Mapping[str, Any]) -> int:
    """Number of outputs the request produces (``num_images``/``num_samples``, default 1).

    For a model the specs do not describe, a positive integer ``num_images`` or
    ``num_samples`` input is taken at its word; otherwise 1.
    """
    spec = MODELS.get(model_name) if isinstance(model_name, str) else None
    if spec is None:
        for name in ("num_images", "num_samples"):
            value = inputs.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return value
        return 1
    if spec.output_count_field is None:
        return 1
    value = inputs.get(spec.output_count_field)
    if value is None:
        f = spec.field(spec.output_count_field)
        return int(f.default) if f and f.default is not None else 1
    if not is_int(value) or not 1 <= value <= 4:
        raise ValueError(
            f"{spec.output_count_field} must be an integer between 1 and 4 (got {_show(value)})"
        )
    return int(value)


def estimate_credits(model_name: str, inputs: Mapping[str, Any]) -> int:
    """Credits charged if the prediction completes (per-output cost x output count).

    Raises ValueError when a billing-relevant input is invalid (validate first).
    """
    spec = get_model(model_name)
    resolved = resolve_inputs(model_name, inputs)
    per_output = spec.credit_rule.per_output_credits(resolved)
    return per_output * output_count(model_name, inputs)


def expected_latency(model_name: str, inputs: Mapping[str, Any]) -> tuple[float, float]:
    """Typical (low, high) processing seconds on the real API for these inputs.

    :data:`GENERIC_LATENCY` for a model the specs do not describe.
    """
    spec = MODELS.get(model_name) if isinstance(model_name, str) else None
    if spec is None:
        return GENERIC_LATENCY
    resolved = resolve_inputs(model_name, inputs)
    if spec.latency_by == GRID_LATENCY_BY:
        mode, res = spec.credit_rule.billed_mode_resolution(resolved)
        key = f"{mode}/{res}"
    else:
        key = "/".join(str(resolved.get(k)) for k in spec.latency_by)
    if key not in spec.latency_seconds:
        raise ValueError(f"no latency figure for {spec.name} with {key!r}")
    low, high = spec.latency_seconds[key]
    for name, (extra_low, extra_high) in spec.latency_extra.items():
        if given(resolved, name):
            low, high = low + extra_low, high + extra_high
    return (low, high)


def output_format(model_name: str, inputs: Mapping[str, Any]) -> str:
    """File format of the outputs: ``"png"``, ``"jpeg"`` or ``"mp4"``."""
    spec = get_model(model_name)
    f = spec.field("output_format")
    if f is None:
        return spec.default_output_format
    value = inputs.get("output_format")
    if value is None:
        return str(f.default) if f.default is not None else spec.default_output_format
    return str(value)


# --------------------------------------------------------------------------- unknown models

_IMAGE_NAMES = frozenset({"image", "mask", "image_context", "image_prompt", "image_reference"})


def is_image_input_name(name: str) -> bool:
    """Whether an input of a model the specs do not describe is taken as an image.

    The FASHN naming pattern: ``image``, ``mask``, ``image_*`` context/prompt/reference
    inputs, and anything ending in ``_image`` or ``_reference``.
    """
    return name in _IMAGE_NAMES or name.endswith(("_image", "_reference"))


def generic_problems(inputs: Mapping[str, Any]) -> list[Problem]:
    """The only checks a model the specs do not describe gets: there are inputs, image
    inputs look like images, and output counts are positive integers."""
    if not inputs:
        return [Problem(None, "no inputs given")]
    problems: list[Problem] = []
    for name, value in inputs.items():
        if is_image_input_name(name) and isinstance(value, str):
            message = image_value_problem(InputField(name, "image"), value)
            if message:
                problems.append(Problem(name, message))
        if name in ("num_images", "num_samples") and not (is_int(value) and value >= 1):
            problems.append(
                Problem(
                    name, f"must be a positive integer (got {_type_name(value)} {_show(value)})"
                )
            )
    return problems
