"""The built-in table of FASHN models: inputs, credit rules, latency and output formats.

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

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fashn_prefect.api.specs.types import (
    RESOLUTIONS,
    CreditRule,
    InputField,
    Latency,
    Lifecycle,
    ModelSpec,
)

ASPECT: tuple[str, ...] = (
    "21:9", "1:1", "4:3", "3:2", "2:3", "5:4", "4:5", "3:4", "16:9", "9:16",
)  # fmt: skip
VERTICAL_ASPECT = ("1:1", "4:5", "3:4", "2:3", "9:16")
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
        _enum("resolution", RESOLUTIONS, default="1k"),
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
GRID_LATENCY_BY = ("generation_mode", "resolution")


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
        latency_by=GRID_LATENCY_BY,
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
        _enum("resolution", RESOLUTIONS, default="1k"),
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
    latency_by=GRID_LATENCY_BY,
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
        _enum("resolution", RESOLUTIONS),
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
#: Every model the specs describe: the built-in ones above plus any added with
#: :func:`register_model` (or as data, see :mod:`fashn_prefect.api.specs.files`).
MODELS: Mapping[str, ModelSpec] = MappingProxyType(_REGISTRY)
BUILTIN_MODELS: frozenset[str] = frozenset(_REGISTRY)
#: Processing time assumed for a model the specs do not describe (polling pace only).
GENERIC_LATENCY: Latency = (5.0, 120.0)


def register_model(spec: ModelSpec) -> None:
    """Add ``spec`` to the specs, or replace the entry of the same name."""
    _REGISTRY[spec.name] = spec
