"""Data-driven catalogue of the FASHN models: inputs, validation, credits, latency, formats.

Everything here comes from the FASHN reference (docs model pages, SDK 0.9.0 types). Choices
where the reference says [UNCONFIRMED] or is ambiguous:

* **Types are strict.** ``validate`` does not coerce: ``"2"`` is not an integer, ``True`` is not
  an integer, ``2.0`` is not an integer. Layers that read CSV/strings must coerce first.
  A value of ``None`` counts as "not given" (a required field set to ``None`` is missing).
* **packshot** (no docs page): lifecycle ``experimental``; billed on the standard 1-5 grid with
  the omitted-mode rule; defaults (``resolution`` 1k, ``num_images`` 1, ``output_format`` png,
  ``seed`` 42) and latency copied from its grid siblings.
* **model-create + face_reference + 4k**: the docs say face_reference caps output at 2K, and
  credits are charged per output actually produced, so the charge is computed at **2k**
  (``CreditRule.face_reference_max_resolution``); a warning Problem says so. Latency also uses
  2k plus the documented +20-30 s face_reference overhead.
* **face-to-model aspect_ratio**: the SDK accepts all ten ratios, the docs say only vertical
  ones (1:1, 4:5, 3:4, 2:3, 9:16) work; other ratios are a *warning*, not an error.
* **background-change** (deprecated): 1 credit per output, ``num_images`` 1-4, latency ~12 s;
  ``resolution`` accepts 1k/2k/4k (SDK) with no default; inputs up to ~1 MP (max edge 2000).
* **image-to-video latency**: docs say "variable"; a third party reports 1-2 min for 5 s clips.
  We use 60-120 s for 5 s and 120-240 s for 10 s, independent of resolution.
* **Latency grid**: only the corners are documented (<20 s at fast+1k, up to 120 s at
  quality+4k; tryon-max <=30 s at balanced+1k). Intermediate cells are interpolated guesses.
  An omitted ``generation_mode`` uses the latency of the mode it is billed as.
* **resolve_inputs** fills documented defaults (for display, hashing and estimates); send the
  caller's original inputs to the API. ``face_reference_mode`` is only filled when a
  ``face_reference`` is given; model-create's ``aspect_ratio`` 1:1 only without
  ``image_reference`` (the output otherwise inherits the reference's ratio).
* **Image inputs** must be an ``http(s)://host/...`` URL or a ``data:image/<fmt>;base64,<data>``
  URI with a non-empty payload; tryon-v1.6 ``model_image`` also takes ``saved:<name>``.
  The payload itself is not decoded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "MODELS",
    "CreditRule",
    "FieldType",
    "InputField",
    "Lifecycle",
    "ModelSpec",
    "Problem",
    "UnknownModel",
    "estimate_credits",
    "expected_latency",
    "generic_problems",
    "get_model",
    "is_image_input_name",
    "output_count",
    "output_format",
    "register_model",
    "resolve_inputs",
    "validate",
]

FieldType = Literal["image", "string", "integer", "boolean"]
Lifecycle = Literal["stable", "preview", "experimental", "deprecated"]
Latency = tuple[float, float]


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class InputField:
    """One input of a model, as documented."""

    name: str
    type: FieldType
    required: bool = False
    enum: tuple[str | int, ...] | None = None
    default: Any = None  # None = no default / server decides
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""
    default_requires: str | None = None  # default applies only when this field is given
    default_unless: str | None = None  # default applies only when this field is absent
    enum_note: str = ""  # extra hint appended to enum errors
    allow_saved: bool = False  # image field also accepts "saved:<name>"


@dataclass(frozen=True)
class CreditRule:
    """How a model is billed, per output (multiplied by the output count).

    ``kind`` is ``"flat"`` (``per_output`` credits), ``"grid"`` (``grid[mode][resolution]``,
    ``omitted_mode[resolution]`` when ``generation_mode`` is not given) or ``"video"``
    (``video[duration][resolution]``). ``face_reference_surcharge`` is added per output when a
    ``face_reference`` is given; ``face_reference_max_resolution`` caps the billed resolution.
    """

    kind: Literal["flat", "grid", "video"]
    per_output: int = 1
    grid: Mapping[str, Mapping[str, int]] = dc_field(default_factory=_empty)
    omitted_mode: Mapping[str, str] = dc_field(default_factory=_empty)
    default_resolution: str = "1k"
    face_reference_surcharge: int = 0
    face_reference_max_resolution: str | None = None
    video: Mapping[int, Mapping[str, int]] = dc_field(default_factory=_empty)
    video_default_duration: int = 5
    video_default_resolution: str = "1080p"

    def billed_mode_resolution(self, inputs: Mapping[str, Any]) -> tuple[str, str]:
        """(mode, resolution) a grid model is billed at for these inputs."""
        res = inputs.get("resolution")
        if res is None:
            res = self.default_resolution
        if not isinstance(res, str) or res not in _RES_ORDER:
            raise ValueError(f"resolution must be one of: {', '.join(_RES_ORDER)} (got {res!r})")
        cap = self.face_reference_max_resolution
        if (
            cap
            and _given(inputs, "face_reference")
            and _RES_ORDER.index(res) > _RES_ORDER.index(cap)
        ):
            res = cap
        mode = inputs.get("generation_mode")
        if mode is None:
            mode = self.omitted_mode[res]
        if mode not in self.grid:
            raise ValueError(
                f"generation_mode must be one of: {', '.join(self.grid)} (got {mode!r})"
            )
        return mode, res

    def per_output_credits(self, inputs: Mapping[str, Any]) -> int:
        """Credits for one output, surcharges included."""
        if self.kind == "flat":
            base = self.per_output
        elif self.kind == "grid":
            mode, res = self.billed_mode_resolution(inputs)
            base = self.grid[mode][res]
        else:
            duration = inputs.get("duration")
            duration = self.video_default_duration if duration is None else duration
            vres = inputs.get("resolution")
            vres = self.video_default_resolution if vres is None else vres
            table = self.video.get(duration) if _is_int(duration) else None
            if table is None or vres not in table:
                raise ValueError(
                    f"no video price for duration={duration!r}, resolution={vres!r}; "
                    f"durations {list(self.video)}, resolutions 480p, 720p, 1080p"
                )
            base = table[vres]
        if self.face_reference_surcharge and _given(inputs, "face_reference"):
            base += self.face_reference_surcharge
        return base


@dataclass(frozen=True)
class ModelSpec:
    """Everything the plugin knows about one model."""

    name: str
    lifecycle: Lifecycle
    fields: tuple[InputField, ...]
    output_count_field: str | None  # "num_images" | "num_samples" | None (always 1 output)
    output_kind: Literal["image", "video"]
    credit_rule: CreditRule
    # Typical (low, high) seconds, keyed by the "/"-joined resolved values of ``latency_by``
    # (e.g. "fast/1k", "performance", "5"); "" when ``latency_by`` is empty.
    latency_seconds: Mapping[str, Latency]
    replacement: str | None = None
    max_input_edge: int = 2000
    latency_by: tuple[str, ...] = ()
    latency_extra: Mapping[str, Latency] = dc_field(
        default_factory=_empty
    )  # added when the named field is given
    default_output_format: str = "png"  # when there is no output_format field (or no default)
    description: str = ""

    def field(self, name: str) -> InputField | None:
        """The input field called ``name``, or None."""
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class Problem:
    """One validation finding; ``str()`` gives ``"<field>: <message>"``."""

    field: str | None  # input field name, or None for model-level problems
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        prefix = f"{self.field}: " if self.field else ""
        suffix = " [warning]" if self.level == "warning" else ""
        return f"{prefix}{self.message}{suffix}"


class UnknownModel(ValueError):
    """A model name not in the catalogue; the message lists every known name."""

    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(f"unknown model {name!r}; known models: {', '.join(MODELS)}")


# --------------------------------------------------------------------------- building blocks

ASPECT: tuple[str, ...] = (
    "21:9", "1:1", "4:3", "3:2", "2:3", "5:4", "4:5", "3:4", "16:9", "9:16",
)  # fmt: skip
VERTICAL_ASPECT = ("1:1", "4:5", "3:4", "2:3", "9:16")
_RES_ORDER: tuple[str, ...] = ("1k", "2k", "4k")
GEN3 = ("fast", "balanced", "quality")
FMT = ("png", "jpeg")
SEED_MAX = 2**32 - 1


def _image(name: str, required: bool = False, description: str = "") -> InputField:
    return InputField(name, "image", required=required, description=description)


def _str(name: str, required: bool = False, default: Any = None, desc: str = "") -> InputField:
    return InputField(name, "string", required=required, default=default, description=desc)


def _enum(name: str, values: tuple[str, ...], default: Any = None, **kw: Any) -> InputField:
    return InputField(name, "string", enum=values, default=default, **kw)


def _count(name: str) -> InputField:
    return InputField(name, "integer", default=1, minimum=1, maximum=4, description="outputs")


def _seed(default: int | None = 42) -> InputField:
    return InputField("seed", "integer", default=default, minimum=0, maximum=SEED_MAX)


def _return_base64() -> InputField:
    return InputField("return_base64", "boolean", default=False)


def _face_reference() -> tuple[InputField, InputField]:
    return (
        _image("face_reference", description="identity reference; +3 credits per output"),
        _enum(
            "face_reference_mode",
            ("match_base", "match_reference"),
            default="match_reference",
            default_requires="face_reference",
        ),
    )


def _grid_tail(
    fmt_default: str = "png", aspect_default: str | None = None
) -> tuple[InputField, ...]:
    """aspect_ratio, resolution, generation_mode, num_images, output_format, return_base64, seed."""
    return (
        _enum("aspect_ratio", ASPECT, default=aspect_default),
        _enum("resolution", _RES_ORDER, default="1k"),
        _enum("generation_mode", GEN3, description="omitted: billed fast at 1k, balanced at 2k/4k"),
        _count("num_images"),
        _enum("output_format", FMT, default=fmt_default),
        _return_base64(),
        _seed(),
    )


def _frozen(d: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in d.items()})


GRID_RULE = CreditRule(
    kind="grid",
    grid=_frozen(
        {
            "fast": {"1k": 1, "2k": 2, "4k": 3},
            "balanced": {"1k": 2, "2k": 3, "4k": 4},
            "quality": {"1k": 3, "2k": 4, "4k": 5},
        }
    ),
    omitted_mode=_frozen({"1k": "fast", "2k": "balanced", "4k": "balanced"}),
)
GRID_FACE_RULE = CreditRule(
    kind="grid",
    grid=GRID_RULE.grid,
    omitted_mode=GRID_RULE.omitted_mode,
    face_reference_surcharge=3,
)
MODEL_CREATE_RULE = CreditRule(
    kind="grid",
    grid=GRID_RULE.grid,
    omitted_mode=GRID_RULE.omitted_mode,
    face_reference_surcharge=3,
    face_reference_max_resolution="2k",
)
TRYON_MAX_RULE = CreditRule(
    kind="grid",
    grid=_frozen({"balanced": {"1k": 2, "2k": 3, "4k": 4}, "quality": {"1k": 3, "2k": 4, "4k": 5}}),
    omitted_mode=_frozen({"1k": "balanced", "2k": "balanced", "4k": "balanced"}),
)
VIDEO_RULE = CreditRule(
    kind="video",
    video=_frozen({5: {"480p": 1, "720p": 3, "1080p": 6}, 10: {"480p": 2, "720p": 6, "1080p": 12}}),
)
FLAT_RULE = CreditRule(kind="flat", per_output=1)

# Documented corners: fast/1k < 20 s, quality/4k up to 120 s; the rest interpolated.
GRID_LATENCY: Mapping[str, Latency] = MappingProxyType(
    {
        "fast/1k": (10.0, 20.0),
        "fast/2k": (15.0, 35.0),
        "fast/4k": (25.0, 60.0),
        "balanced/1k": (15.0, 30.0),
        "balanced/2k": (20.0, 45.0),
        "balanced/4k": (35.0, 90.0),
        "quality/1k": (20.0, 45.0),
        "quality/2k": (30.0, 70.0),
        "quality/4k": (50.0, 120.0),
    }
)
# Documented: <= 30 s at balanced/1k, up to 120 s at quality/4k.
TRYON_MAX_LATENCY: Mapping[str, Latency] = MappingProxyType(
    {
        "balanced/1k": (15.0, 30.0),
        "balanced/2k": (25.0, 50.0),
        "balanced/4k": (40.0, 90.0),
        "quality/1k": (25.0, 45.0),
        "quality/2k": (35.0, 70.0),
        "quality/4k": (60.0, 120.0),
    }
)
_GRID_LATENCY_BY = ("generation_mode", "resolution")


def _grid_model(
    name: str,
    lifecycle: Lifecycle,
    head: tuple[InputField, ...],
    rule: CreditRule = GRID_RULE,
    tail: tuple[InputField, ...] | None = None,
    description: str = "",
    **kw: Any,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        lifecycle=lifecycle,
        fields=head + (tail if tail is not None else _grid_tail()),
        output_count_field="num_images",
        output_kind="image",
        credit_rule=rule,
        latency_seconds=GRID_LATENCY,
        max_input_edge=6000,
        latency_by=_GRID_LATENCY_BY,
        description=description,
        **kw,
    )


_TRYON_MAX = ModelSpec(
    name="tryon-max",
    lifecycle="preview",
    fields=(
        _image("model_image", required=True, description="person; identity and pose preserved"),
        _image("product_image", required=True, description="garment, shoes, bag, jewelry..."),
        _str("prompt", default="", desc='tweaks such as "tuck in shirt"'),
        _enum("aspect_ratio", ASPECT),
        _enum(
            "generation_mode",
            ("balanced", "quality"),
            description="omitted: billed as balanced",
            enum_note="tryon-max has no 'fast' mode",
        ),
        _enum("resolution", _RES_ORDER, default="1k"),
        _count("num_images"),
        _enum("output_format", FMT, default="png"),
        _return_base64(),
        _seed(),
    ),
    output_count_field="num_images",
    output_kind="image",
    credit_rule=TRYON_MAX_RULE,
    latency_seconds=TRYON_MAX_LATENCY,
    max_input_edge=6000,
    latency_by=_GRID_LATENCY_BY,
    description="Virtual try-on, highest quality.",
)

_TRYON_V16 = ModelSpec(
    name="tryon-v1.6",
    lifecycle="stable",
    fields=(
        InputField(
            "model_image",
            "image",
            required=True,
            allow_saved=True,
            description="person image, or saved:<name> (Models Studio)",
        ),
        _image("garment_image", required=True),
        _enum("category", ("auto", "tops", "bottoms", "one-pieces"), default="auto"),
        _enum("garment_photo_type", ("auto", "flat-lay", "model"), default="auto"),
        _enum("mode", ("performance", "balanced", "quality"), default="balanced"),
        _enum("moderation_level", ("conservative", "permissive", "none"), default="permissive"),
        InputField("segmentation_free", "boolean", default=True),
        _count("num_samples"),
        _enum("output_format", FMT, default="png"),
        _return_base64(),
        _seed(),
    ),
    output_count_field="num_samples",
    output_kind="image",
    credit_rule=FLAT_RULE,
    latency_seconds=MappingProxyType(
        {"performance": (4.0, 6.0), "balanced": (6.0, 10.0), "quality": (12.0, 17.0)}
    ),
    latency_by=("mode",),
    description="Virtual try-on v1.6 (864x1296 output).",
)

_PRODUCT_TO_MODEL = _grid_model(
    "product-to-model",
    "preview",
    (
        _image("product_image", required=True),
        _image("image_prompt", description="reference image for the scene/model"),
        *_face_reference(),
        _str("prompt"),
        _image("background_reference", description="background; any person in it is ignored"),
        _image(
            "model_image",
            description="deprecated; cannot be combined with image_prompt, "
            "background_reference or face_reference (use tryon-max)",
        ),
    ),
    rule=GRID_FACE_RULE,
    description="Product image to on-model photo.",
)

_MODEL_CREATE = _grid_model(
    "model-create",
    "experimental",
    (
        _str("prompt", required=True),
        _image("image_reference", description="output inherits its ratio unless aspect_ratio"),
        *_face_reference(),
    ),
    rule=MODEL_CREATE_RULE,
    tail=(
        _enum("aspect_ratio", ASPECT, default="1:1", default_unless="image_reference"),
        *_grid_tail()[1:],
    ),
    latency_extra=MappingProxyType({"face_reference": (20.0, 30.0)}),
    description="Generate a fashion model from a prompt.",
)

_MODEL_SWAP = _grid_model(
    "model-swap",
    "experimental",
    (
        _image("model_image", required=True),
        _str("prompt", default="", desc="empty: automatic"),
        *_face_reference(),
    ),
    rule=GRID_FACE_RULE,
    description="Swap the model while keeping the outfit.",
)

_FACE_TO_MODEL = _grid_model(
    "face-to-model",
    "experimental",
    (
        _image("face_image", required=True),
        _str("prompt", default="", desc="body-shape guidance"),
    ),
    tail=_grid_tail(fmt_default="jpeg", aspect_default="2:3"),
    default_output_format="jpeg",
    description="Face image to full-body model.",
)

_EDIT = _grid_model(
    "edit",
    "experimental",
    (
        _image("image", required=True),
        _str("prompt", required=True),
        _image("mask", description="white = edit, black = keep; must match source dimensions"),
        _image("image_context", description="reference image"),
    ),
    description="Prompted image edit.",
)

_REFRAME = _grid_model(
    "reframe",
    "experimental",
    (
        _image("image", required=True),
        InputField("aspect_ratio", "string", required=True, enum=ASPECT),
    ),
    tail=_grid_tail()[1:],
    description="Outpaint to a new aspect ratio.",
)

_PACKSHOT = _grid_model(
    "packshot",
    "experimental",  # [UNCONFIRMED]
    (
        _image("product_image", required=True),
        _str("prompt", default="", desc="empty: a commercial default"),
        _image("image_context", description="style reference"),
    ),
    description="Product packshot. Credits/latency/defaults [UNCONFIRMED]: grid assumed.",
)

_BACKGROUND_REMOVE = ModelSpec(
    name="background-remove",
    lifecycle="experimental",
    fields=(_image("image", required=True), _return_base64()),
    output_count_field=None,
    output_kind="image",
    credit_rule=FLAT_RULE,
    latency_seconds=MappingProxyType({"": (1.0, 3.0)}),
    default_output_format="png",
    description="Transparent PNG cut-out (up to 4 MP).",
)

_IMAGE_TO_VIDEO = ModelSpec(
    name="image-to-video",
    lifecycle="experimental",
    fields=(
        _image("image", required=True, description="start frame"),
        _str("prompt", default="", desc="empty: automatic motion"),
        _str("negative_prompt"),
        InputField("duration", "integer", enum=(5, 10), default=5, description="seconds"),
        _enum("resolution", ("480p", "720p", "1080p"), default="1080p"),
        _image("end_image", description="only with resolution 1080p"),
        _seed(default=None),
    ),
    output_count_field=None,
    output_kind="video",
    credit_rule=VIDEO_RULE,
    latency_seconds=MappingProxyType({"5": (60.0, 120.0), "10": (120.0, 240.0)}),
    latency_by=("duration",),
    default_output_format="mp4",
    description="Animate an image into a 5 s or 10 s MP4.",
)

_BACKGROUND_CHANGE = ModelSpec(
    name="background-change",
    lifecycle="deprecated",
    fields=(
        _image("image", required=True),
        _str("prompt", required=True),
        _enum("generation_mode", GEN3),
        _count("num_images"),
        _enum("output_format", FMT, default="png"),
        _enum("resolution", _RES_ORDER),
        _return_base64(),
        _seed(),
    ),
    output_count_field="num_images",
    output_kind="image",
    credit_rule=FLAT_RULE,
    latency_seconds=MappingProxyType({"": (10.0, 15.0)}),
    replacement="edit",
    description="Deprecated: use edit (+ image_context for a specific background).",
)

_REGISTRY: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        _TRYON_MAX,
        _TRYON_V16,
        _PRODUCT_TO_MODEL,
        _MODEL_CREATE,
        _MODEL_SWAP,
        _FACE_TO_MODEL,
        _EDIT,
        _REFRAME,
        _BACKGROUND_REMOVE,
        _IMAGE_TO_VIDEO,
        _PACKSHOT,
        _BACKGROUND_CHANGE,
    )
}
#: Every model the catalogue knows: the built-in ones above plus any added with
#: :func:`register_model` (or as data, see :mod:`fashn_prefect.api.model_data`).
MODELS: Mapping[str, ModelSpec] = MappingProxyType(_REGISTRY)
BUILTIN_MODELS: frozenset[str] = frozenset(_REGISTRY)
#: Processing time assumed for a model the catalogue does not know (polling pace only).
GENERIC_LATENCY: Latency = (5.0, 120.0)


def register_model(spec: ModelSpec) -> None:
    """Add ``spec`` to the catalogue, or replace the entry of the same name."""
    _REGISTRY[spec.name] = spec


# --------------------------------------------------------------------------- public functions


def get_model(name: str) -> ModelSpec:
    """The spec of ``name``; raises :class:`UnknownModel` listing the known names."""
    spec = MODELS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownModel(name)
    return spec


def _given(inputs: Mapping[str, Any], name: str) -> bool:
    return inputs.get(name) is not None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        parts = urlsplit(value)
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
        if not _is_int(value):
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


def _cross_field_problems(spec: ModelSpec, inputs: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    name = spec.name
    if name == "image-to-video" and _given(inputs, "end_image"):
        res = inputs.get("resolution") or "1080p"
        if res != "1080p":
            out.append(
                Problem("end_image", f"is only allowed with resolution 1080p (got {_show(res)})")
            )
    if name == "product-to-model" and _given(inputs, "model_image"):
        clash = [
            k
            for k in ("image_prompt", "background_reference", "face_reference")
            if _given(inputs, k)
        ]
        if clash:
            out.append(Problem("model_image", f"cannot be combined with {', '.join(clash)}"))
        out.append(
            Problem("model_image", "is deprecated on product-to-model; use tryon-max", "warning")
        )
    if (
        name == "model-create"
        and _given(inputs, "face_reference")
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
        return [Problem(None, str(UnknownModel(model_name)))]
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

    For a model the catalogue does not know, a positive integer ``num_images`` or
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
    if not _is_int(value) or not 1 <= value <= 4:
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

    :data:`GENERIC_LATENCY` for a model the catalogue does not know.
    """
    spec = MODELS.get(model_name) if isinstance(model_name, str) else None
    if spec is None:
        return GENERIC_LATENCY
    resolved = resolve_inputs(model_name, inputs)
    if spec.latency_by == _GRID_LATENCY_BY:
        mode, res = spec.credit_rule.billed_mode_resolution(resolved)
        key = f"{mode}/{res}"
    else:
        key = "/".join(str(resolved.get(k)) for k in spec.latency_by)
    if key not in spec.latency_seconds:
        raise ValueError(f"no latency figure for {spec.name} with {key!r}")
    low, high = spec.latency_seconds[key]
    for name, (extra_low, extra_high) in spec.latency_extra.items():
        if _given(resolved, name):
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
    """Whether an input of a model the catalogue does not know is taken as an image.

    The FASHN naming pattern: ``image``, ``mask``, ``image_*`` context/prompt/reference
    inputs, and anything ending in ``_image`` or ``_reference``.
    """
    return name in _IMAGE_NAMES or name.endswith(("_image", "_reference"))


def generic_problems(inputs: Mapping[str, Any]) -> list[Problem]:
    """The only checks a model the catalogue does not know gets: there are inputs, image
    inputs look like images, and output counts are positive integers."""
    if not inputs:
        return [Problem(None, "no inputs given")]
    problems: list[Problem] = []
    for name, value in inputs.items():
        if is_image_input_name(name) and isinstance(value, str):
            message = image_value_problem(InputField(name, "image"), value)
            if message:
                problems.append(Problem(name, message))
        if name in ("num_images", "num_samples") and not (_is_int(value) and value >= 1):
            problems.append(
                Problem(
                    name, f"must be a positive integer (got {_type_name(value)} {_show(value)})"
                )
            )
    return problems
