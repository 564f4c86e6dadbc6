"""The types of a model spec: its input fields, credit rule, latency and the problems
validation reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any, Literal

FieldType = Literal["image", "string", "integer", "boolean"]
Lifecycle = Literal["stable", "preview", "experimental", "deprecated"]
Latency = tuple[float, float]
RESOLUTIONS: tuple[str, ...] = ("1k", "2k", "4k")
"""Output resolutions, smallest first."""


def given(inputs: Mapping[str, Any], name: str) -> bool:
    """Whether input ``name`` is given (``None`` counts as not given)."""
    return inputs.get(name) is not None


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


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
        if not isinstance(res, str) or res not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of: {', '.join(RESOLUTIONS)} (got {res!r})")
        cap = self.face_reference_max_resolution
        if (
            cap
            and given(inputs, "face_reference")
            and RESOLUTIONS.index(res) > RESOLUTIONS.index(cap)
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
            table = self.video.get(duration) if is_int(duration) else None
            if table is None or vres not in table:
                raise ValueError(
                    f"no video price for duration={duration!r}, resolution={vres!r}; "
                    f"durations {list(self.video)}, resolutions 480p, 720p, 1080p"
                )
            base = table[vres]
        if self.face_reference_surcharge and given(inputs, "face_reference"):
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
