"""Add model specs as data (JSON or TOML), without a new release.

FASHN ships models without notice. A model the specs do not describe already runs as a
pass-through (inputs sent as given, credits unknown until the API reports them); describing
it in a file gives it full validation, credit estimates and a polling pace::

    {"models": {"tryon-v2": {
        "lifecycle": "experimental",
        "inputs": {
            "model_image": {"type": "image", "required": true},
            "garment_image": {"type": "image", "required": true},
            "mode": {"type": "string", "enum": ["fast", "quality"], "default": "fast"},
            "num_images": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4}
        },
        "output_count_field": "num_images",
        "credits": {"per_output": 2},
        "latency_seconds": [10, 30]
    }}}

Per model: ``inputs`` (required; each with ``type`` image|string|integer|boolean and
optional ``required``, ``enum``, ``default``, ``minimum``, ``maximum``, ``description``),
``lifecycle`` (default experimental), ``output_count_field`` (num_images, num_samples or
omitted for one output), ``output_kind`` (image|video), ``credits`` (``{"per_output": N}``
or ``{"grid": "standard"|"tryon-max"}``, plus optional ``face_reference_surcharge``),
``latency_seconds`` ``[low, high]``, ``default_output_format``, ``max_input_edge``,
``replacement`` and ``description``. A file may also replace a built-in model's entry
(for example after a price change).

Load files with :func:`load_models`, or name them in the ``FASHN_PREFECT_MODELS``
environment variable (paths separated by ``os.pathsep``); every manifest validation loads
those first.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fashn_prefect.api.specs.builtin import FLAT_RULE, GRID_RULE, TRYON_MAX_RULE, register_model
from fashn_prefect.api.specs.types import CreditRule, InputField, ModelSpec
from fashn_prefect.environment import FASHN_PREFECT_MODELS
from fashn_prefect.errors import ModelSpecError

_FIELD_TYPES = ("image", "string", "integer", "boolean")
_LIFECYCLES = ("stable", "preview", "experimental", "deprecated")
_GRIDS = {"standard": GRID_RULE, "tryon-max": TRYON_MAX_RULE}
_loaded: dict[str, float] = {}


def load_models(source: str | Path | Mapping[str, Any]) -> list[str]:
    """Register every model described in a JSON/TOML file (or an already parsed mapping).

    Returns the names registered. Raises :class:`ModelSpecError` naming the file, the
    model and the problem; nothing from a file with a problem is registered.
    """
    where = "model spec data"
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise ModelSpecError(f"{where}: cannot read ({exc})") from None
    models = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, Mapping) or not models:
        raise ModelSpecError(f'{where}: expected {{"models": {{"<name>": {{...}}}}}}')
    specs = [_spec(f"{where}: model {name!r}", str(name), raw) for name, raw in models.items()]
    for spec in specs:
        register_model(spec)
    return [spec.name for spec in specs]


def load_models_from_env() -> list[str]:
    """Load the files named in ``FASHN_PREFECT_MODELS`` (each again only when it changed)."""
    names: list[str] = []
    for entry in filter(None, (FASHN_PREFECT_MODELS.get() or "").split(os.pathsep)):
        try:
            stamp = Path(entry).stat().st_mtime
        except OSError as exc:
            raise ModelSpecError(
                f"{FASHN_PREFECT_MODELS.name}: cannot read {entry} ({exc})"
            ) from None
        if _loaded.get(entry) != stamp:
            names += load_models(entry)
            _loaded[entry] = stamp
    return names


def _spec(where: str, name: str, raw: Any) -> ModelSpec:
    if not isinstance(raw, Mapping):
        raise ModelSpecError(f"{where}: expected an object")
    inputs = raw.get("inputs")
    if not isinstance(inputs, Mapping) or not inputs:
        raise ModelSpecError(f"{where}: 'inputs' must map input names to descriptions")
    fields = tuple(
        _field(f"{where}, input {key!r}", str(key), value) for key, value in inputs.items()
    )
    lifecycle = raw.get("lifecycle", "experimental")
    if lifecycle not in _LIFECYCLES:
        raise ModelSpecError(f"{where}: lifecycle must be one of {', '.join(_LIFECYCLES)}")
    count_field = raw.get("output_count_field")
    if count_field is not None and count_field not in inputs:
        raise ModelSpecError(f"{where}: output_count_field {count_field!r} is not an input")
    output_kind = raw.get("output_kind", "image")
    if output_kind not in ("image", "video"):
        raise ModelSpecError(f"{where}: output_kind must be image or video")
    latency = raw.get("latency_seconds", [5, 120])
    if (
        not isinstance(latency, list | tuple)
        or len(latency) != 2
        or not all(_number(v) and v >= 0 for v in latency)
        or latency[0] > latency[1]
    ):
        raise ModelSpecError(f"{where}: latency_seconds must be [low, high] seconds")
    try:
        return ModelSpec(
            name=name,
            lifecycle=lifecycle,
            fields=fields,
            output_count_field=count_field,
            output_kind=output_kind,
            credit_rule=_credits(where, raw.get("credits")),
            latency_seconds=MappingProxyType({"": (float(latency[0]), float(latency[1]))}),
            replacement=raw.get("replacement"),
            max_input_edge=int(raw.get("max_input_edge", 2000)),
            default_output_format=str(
                raw.get("default_output_format", "mp4" if output_kind == "video" else "png")
            ),
            description=str(raw.get("description", "")),
        )
    except (TypeError, ValueError) as exc:
        raise ModelSpecError(f"{where}: {exc}") from None


def _field(where: str, name: str, raw: Any) -> InputField:
    if not isinstance(raw, Mapping) or raw.get("type") not in _FIELD_TYPES:
        raise ModelSpecError(f"{where}: needs a type: one of {', '.join(_FIELD_TYPES)}")
    enum = raw.get("enum")
    if enum is not None and (not isinstance(enum, list) or not enum):
        raise ModelSpecError(f"{where}: enum must be a non-empty list")
    for bound in ("minimum", "maximum"):
        if raw.get(bound) is not None and not isinstance(raw[bound], int):
            raise ModelSpecError(f"{where}: {bound} must be an integer")
    return InputField(
        name,
        raw["type"],
        required=bool(raw.get("required", False)),
        enum=tuple(enum) if enum is not None else None,
        default=raw.get("default"),
        minimum=raw.get("minimum"),
        maximum=raw.get("maximum"),
        description=str(raw.get("description", "")),
    )


def _credits(where: str, raw: Any) -> CreditRule:
    if raw is None:
        raise ModelSpecError(f"{where}: 'credits' is required ({{\"per_output\": N}})")
    if not isinstance(raw, Mapping):
        raise ModelSpecError(f"{where}: credits must be an object")
    surcharge = raw.get("face_reference_surcharge", 0)
    if not isinstance(surcharge, int) or surcharge < 0:
        raise ModelSpecError(f"{where}: face_reference_surcharge must be an integer >= 0")
    if "grid" in raw:
        grid = _GRIDS.get(raw["grid"])
        if grid is None:
            raise ModelSpecError(f"{where}: credits grid must be one of {', '.join(_GRIDS)}")
        return replace(grid, face_reference_surcharge=surcharge)
    per_output = raw.get("per_output")
    if not isinstance(per_output, int) or isinstance(per_output, bool) or per_output < 0:
        raise ModelSpecError(f"{where}: credits.per_output must be an integer >= 0")
    return replace(FLAT_RULE, per_output=per_output, face_reference_surcharge=surcharge)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
