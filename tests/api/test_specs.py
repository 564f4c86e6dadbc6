"""Catalogue tests: expected values are copied from the FASHN reference (sections 3-5, 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashn_prefect.api.specs import (
    MODELS,
    Problem,
    estimate_credits,
    expected_latency,
    get_model,
    output_count,
    output_format,
    resolve_inputs,
    validate,
)
from fashn_prefect.errors import UnknownModel

pytestmark = pytest.mark.unit

URL = "https://cdn.example.com/a.jpg"
DATA = "data:image/jpeg;base64,/9j/4AAQSkZJRg=="

ALL_MODELS = [
    "tryon-max",
    "tryon-v1.6",
    "product-to-model",
    "model-create",
    "model-swap",
    "face-to-model",
    "edit",
    "reframe",
    "background-remove",
    "image-to-video",
    "packshot",
    "background-change",
]

# Minimal valid inputs per model (required fields from reference section 3/4).
MINIMAL: dict[str, dict[str, object]] = {
    "tryon-max": {"model_image": URL, "product_image": URL},
    "tryon-v1.6": {"model_image": URL, "garment_image": URL},
    "product-to-model": {"product_image": URL},
    "model-create": {"prompt": "a model in a red dress"},
    "model-swap": {"model_image": URL},
    "face-to-model": {"face_image": URL},
    "edit": {"image": URL, "prompt": "make the shirt blue"},
    "reframe": {"image": URL, "aspect_ratio": "16:9"},
    "background-remove": {"image": URL},
    "image-to-video": {"image": URL},
    "packshot": {"product_image": URL},
    "background-change": {"image": URL, "prompt": "a beach"},
}

GRID_MODELS = [
    "product-to-model",
    "model-create",
    "model-swap",
    "face-to-model",
    "edit",
    "reframe",
    "packshot",  # [UNCONFIRMED] grid assumed
]

# Reference section 5 per-output grid.
GRID = [
    ("fast", "1k", 1),
    ("fast", "2k", 2),
    ("fast", "4k", 3),
    ("balanced", "1k", 2),
    ("balanced", "2k", 3),
    ("balanced", "4k", 4),
    ("quality", "1k", 3),
    ("quality", "2k", 4),
    ("quality", "4k", 5),
]


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == "error"]


def warnings(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == "warning"]


# --------------------------------------------------------------------------- catalogue shape


def test_all_twelve_models_present():
    assert sorted(MODELS) == sorted(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_minimal_inputs_are_valid(name):
    assert errors(validate(name, MINIMAL[name])) == []


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("tryon-max", {"model_image", "product_image"}),
        ("tryon-v1.6", {"model_image", "garment_image"}),
        ("product-to-model", {"product_image"}),
        ("model-create", {"prompt"}),
        ("model-swap", {"model_image"}),
        ("face-to-model", {"face_image"}),
        ("edit", {"image", "prompt"}),
        ("reframe", {"image", "aspect_ratio"}),
        ("background-remove", {"image"}),
        ("image-to-video", {"image"}),
        ("packshot", {"product_image"}),
        ("background-change", {"image", "prompt"}),
    ],
)
def test_required_fields_and_missing_reported(name, required):
    spec = get_model(name)
    assert {f.name for f in spec.fields if f.required} == required
    problems = errors(validate(name, {}))
    assert {p.field for p in problems} == required
    assert all("required" in p.message for p in problems)


@pytest.mark.parametrize(
    ("name", "lifecycle"),
    [
        ("tryon-max", "preview"),
        ("tryon-v1.6", "stable"),
        ("product-to-model", "preview"),
        ("model-create", "experimental"),
        ("model-swap", "experimental"),
        ("face-to-model", "experimental"),
        ("edit", "experimental"),
        ("reframe", "experimental"),
        ("background-remove", "experimental"),
        ("image-to-video", "experimental"),
        ("background-change", "deprecated"),
    ],
)
def test_lifecycle(name, lifecycle):
    assert get_model(name).lifecycle == lifecycle


@pytest.mark.parametrize(
    ("name", "count_field", "kind"),
    [
        ("tryon-max", "num_images", "image"),
        ("tryon-v1.6", "num_samples", "image"),
        ("product-to-model", "num_images", "image"),
        ("model-create", "num_images", "image"),
        ("model-swap", "num_images", "image"),
        ("face-to-model", "num_images", "image"),
        ("edit", "num_images", "image"),
        ("reframe", "num_images", "image"),
        ("background-remove", None, "image"),
        ("image-to-video", None, "video"),
        ("packshot", "num_images", "image"),
    ],
)
def test_output_count_field_and_kind(name, count_field, kind):
    spec = get_model(name)
    assert spec.output_count_field == count_field
    assert spec.output_kind == kind


@pytest.mark.parametrize(
    ("name", "edge"),
    [
        ("tryon-v1.6", 2000),
        ("background-remove", 2000),
        ("tryon-max", 6000),
        ("product-to-model", 6000),
        ("edit", 6000),
        ("reframe", 6000),
    ],
)
def test_max_input_edge(name, edge):
    assert get_model(name).max_input_edge == edge


def test_field_lookup():
    spec = get_model("tryon-v1.6")
    cat = spec.field("category")
    assert cat is not None
    assert cat.enum == ("auto", "tops", "bottoms", "one-pieces")
    assert cat.default == "auto"
    assert spec.field("nope") is None
    seed = spec.field("seed")
    assert seed is not None
    assert (seed.minimum, seed.maximum, seed.default) == (0, 4294967295, 42)


# --------------------------------------------------------------------------- credits


@pytest.mark.parametrize("name", GRID_MODELS)
@pytest.mark.parametrize(("mode", "res", "credits"), GRID)
def test_grid_credits(name, mode, res, credits):
    inputs = {**MINIMAL[name], "generation_mode": mode, "resolution": res}
    assert estimate_credits(name, inputs) == credits


@pytest.mark.parametrize("name", GRID_MODELS)
@pytest.mark.parametrize(("res", "credits"), [("1k", 1), ("2k", 3), ("4k", 4), (None, 1)])
def test_grid_omitted_mode_billed_fast_at_1k_balanced_above(name, res, credits):
    inputs = dict(MINIMAL[name])
    if res is not None:
        inputs["resolution"] = res
    assert estimate_credits(name, inputs) == credits


@pytest.mark.parametrize(
    ("mode", "res", "credits"),
    [
        ("balanced", "1k", 2),
        ("balanced", "2k", 3),
        ("balanced", "4k", 4),
        ("quality", "1k", 3),
        ("quality", "2k", 4),
        ("quality", "4k", 5),
        (None, "1k", 2),
        (None, "2k", 3),
        (None, "4k", 4),
        (None, None, 2),
    ],
)
def test_tryon_max_credits(mode, res, credits):
    inputs = dict(MINIMAL["tryon-max"])
    if mode:
        inputs["generation_mode"] = mode
    if res:
        inputs["resolution"] = res
    assert estimate_credits("tryon-max", inputs) == credits


def test_tryon_max_fast_is_rejected():
    problems = errors(validate("tryon-max", {**MINIMAL["tryon-max"], "generation_mode": "fast"}))
    assert len(problems) == 1
    assert problems[0].field == "generation_mode"
    assert "balanced, quality" in problems[0].message
    assert "'fast'" in problems[0].message
    with pytest.raises(ValueError):
        estimate_credits("tryon-max", {**MINIMAL["tryon-max"], "generation_mode": "fast"})


@pytest.mark.parametrize("name", ["product-to-model", "model-create", "model-swap"])
@pytest.mark.parametrize(
    ("mode", "res", "n", "credits"),
    [
        ("fast", "1k", 1, 4),
        ("quality", "2k", 1, 7),
        ("balanced", "1k", 3, 15),
        (None, "1k", 2, 8),
        (None, "2k", 1, 6),
    ],
)
def test_face_reference_surcharge(name, mode, res, n, credits):
    inputs = {**MINIMAL[name], "face_reference": URL, "resolution": res, "num_images": n}
    if mode:
        inputs["generation_mode"] = mode
    assert estimate_credits(name, inputs) == credits


@pytest.mark.parametrize("name", ["product-to-model", "model-swap"])
def test_face_reference_at_4k(name):
    inputs = {
        **MINIMAL[name],
        "face_reference": URL,
        "resolution": "4k",
        "generation_mode": "quality",
    }
    assert estimate_credits(name, inputs) == 5 + 3


def test_model_create_face_reference_4k_billed_at_2k_with_warning():
    inputs = {
        **MINIMAL["model-create"],
        "face_reference": URL,
        "resolution": "4k",
        "generation_mode": "quality",
    }
    # output capped at 2K -> quality@2k (4) + 3 surcharge
    assert estimate_credits("model-create", inputs) == 7
    problems = validate("model-create", inputs)
    assert errors(problems) == []
    assert [p.field for p in warnings(problems)] == ["resolution"]
    assert "2k" in warnings(problems)[0].message


@pytest.mark.parametrize("name", ["face-to-model", "edit", "reframe", "tryon-max"])
def test_face_reference_no_surcharge_elsewhere(name):
    inputs = {**MINIMAL[name], "face_reference": URL, "generation_mode": "quality"}
    assert estimate_credits(name, inputs) == 3
    assert [p.field for p in warnings(validate(name, inputs))] == ["face_reference"]


@pytest.mark.parametrize("name", [*GRID_MODELS, "tryon-max", "background-change"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_num_images_multiplies(name, n):
    inputs = {**MINIMAL[name], "generation_mode": "quality", "resolution": "2k", "num_images": n}
    per = 1 if name == "background-change" else 4
    assert estimate_credits(name, inputs) == per * n
    assert output_count(name, inputs) == n


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tryon_v16_num_samples_multiplies(n):
    inputs = {**MINIMAL["tryon-v1.6"], "num_samples": n, "mode": "quality"}
    assert estimate_credits("tryon-v1.6", inputs) == n
    assert output_count("tryon-v1.6", inputs) == n


@pytest.mark.parametrize(
    ("duration", "res", "credits"),
    [
        (5, "480p", 1),
        (5, "720p", 3),
        (5, "1080p", 6),
        (10, "480p", 2),
        (10, "720p", 6),
        (10, "1080p", 12),
        (None, None, 6),
        (10, None, 12),
        (None, "720p", 3),
    ],
)
def test_image_to_video_credits(duration, res, credits):
    inputs = dict(MINIMAL["image-to-video"])
    if duration is not None:
        inputs["duration"] = duration
    if res is not None:
        inputs["resolution"] = res
    assert estimate_credits("image-to-video", inputs) == credits
    assert output_count("image-to-video", inputs) == 1


@pytest.mark.parametrize("name", ["tryon-v1.6", "background-remove", "background-change"])
def test_flat_one_credit(name):
    assert estimate_credits(name, MINIMAL[name]) == 1


def test_estimate_rejects_bad_billing_input():
    with pytest.raises(ValueError):
        estimate_credits("edit", {**MINIMAL["edit"], "resolution": "8k"})
    with pytest.raises(ValueError):
        estimate_credits("edit", {**MINIMAL["edit"], "num_images": 9})
    with pytest.raises(UnknownModel):
        estimate_credits("model-variation", {})


# --------------------------------------------------------------------------- validation


def test_four_distinct_problems_all_reported():
    inputs = {
        "model_image": "not-a-url",  # bad image
        # garment_image missing
        "category": "shirt",  # enum
        "num_samples": 9,  # range
    }
    problems = errors(validate("tryon-v1.6", inputs))
    assert len(problems) == 4
    assert {p.field for p in problems} == {
        "model_image",
        "garment_image",
        "category",
        "num_samples",
    }
    by_field = {p.field: p.message for p in problems}
    assert by_field["category"] == "must be one of: auto, tops, bottoms, one-pieces (got 'shirt')"
    assert "1" in by_field["num_samples"] and "4" in by_field["num_samples"]
    assert "9" in by_field["num_samples"]
    assert "'not-a-url'" in by_field["model_image"]


def test_unknown_model_lists_all_names():
    problems = validate("tryon-v2", {"model_image": URL})
    assert len(problems) == 1
    assert problems[0].level == "error"
    assert problems[0].field is None
    for name in ALL_MODELS:
        assert name in problems[0].message
    with pytest.raises(UnknownModel) as exc:
        get_model("tryon-v2")
    assert isinstance(exc.value, ValueError)
    for name in ALL_MODELS:
        assert name in str(exc.value)


def test_deprecated_model_warns_with_replacement():
    problems = validate("background-change", MINIMAL["background-change"])
    assert errors(problems) == []
    (warn,) = warnings(problems)
    assert "deprecated" in warn.message
    assert "edit" in warn.message
    assert get_model("background-change").replacement == "edit"


def test_unknown_key_is_warning():
    problems = validate("edit", {**MINIMAL["edit"], "strength": 0.5})
    assert errors(problems) == []
    (warn,) = warnings(problems)
    assert warn.field == "strength"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_images", "2"),
        ("num_images", 2.0),
        ("num_images", True),
        ("seed", "42"),
        ("seed", 4.2),
        ("return_base64", 1),
        ("return_base64", "true"),
        ("prompt", 123),
        ("prompt", ["a"]),
        ("image", 42),
        ("resolution", 1),
    ],
)
def test_types_are_strict(field, value):
    problems = errors(validate("edit", {**MINIMAL["edit"], field: value}))
    assert len(problems) == 1
    assert problems[0].field == field
    assert "must be" in problems[0].message
    assert type(value).__name__ in problems[0].message


@pytest.mark.parametrize(
    ("model", "field", "value", "ok"),
    [
        ("edit", "num_images", 0, False),
        ("edit", "num_images", 1, True),
        ("edit", "num_images", 4, True),
        ("edit", "num_images", 5, False),
        ("edit", "num_images", 10**30, False),
        ("edit", "seed", -1, False),
        ("edit", "seed", 0, True),
        ("edit", "seed", 4294967295, True),
        ("edit", "seed", 4294967296, False),
        ("tryon-v1.6", "num_samples", 0, False),
        ("tryon-v1.6", "num_samples", 4, True),
        ("tryon-v1.6", "num_samples", 5, False),
    ],
)
def test_ranges(model, field, value, ok):
    problems = errors(validate(model, {**MINIMAL[model], field: value}))
    if ok:
        assert problems == []
    else:
        assert [p.field for p in problems] == [field]
        assert "between" in problems[0].message


@pytest.mark.parametrize(
    ("model", "field", "good", "bad"),
    [
        ("tryon-v1.6", "mode", "performance", "fast"),
        ("tryon-v1.6", "garment_photo_type", "flat-lay", "flat"),
        ("tryon-v1.6", "moderation_level", "none", "strict"),
        ("edit", "aspect_ratio", "21:9", "2:1"),
        ("edit", "resolution", "4k", "8k"),
        ("edit", "generation_mode", "fast", "turbo"),
        ("edit", "output_format", "jpeg", "webp"),
        ("image-to-video", "duration", 10, 7),
        ("image-to-video", "resolution", "480p", "1k"),
        ("product-to-model", "face_reference_mode", "match_base", "match"),
    ],
)
def test_enums(model, field, good, bad):
    assert errors(validate(model, {**MINIMAL[model], field: good})) == []
    problems = errors(validate(model, {**MINIMAL[model], field: bad}))
    assert [p.field for p in problems] == [field]
    assert "must be one of" in problems[0].message
    assert repr(bad) in problems[0].message


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://example.com/x.png", True),
        ("http://127.0.0.1:8000/files/x.jpg", True),
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("data:image/jpg;base64,/9j/", True),
        ("data:image/png;base64,", False),
        ("data:image/png,iVBORw0KGgo=", False),
        ("data:text/plain;base64,aGVsbG8=", False),
        ("data:;base64,aGVsbG8=", False),
        ("iVBORw0KGgo=", False),
        ("ftp://example.com/x.png", False),
        ("https://", False),
        ("/tmp/x.png", False),
        ("saved:my-model", False),  # only tryon-v1.6 model_image
        ("", False),
    ],
)
def test_image_values(value, ok):
    problems = errors(validate("edit", {**MINIMAL["edit"], "image": value}))
    assert (problems == []) is ok
    if not ok:
        assert [p.field for p in problems] == ["image"]


def test_saved_model_only_for_tryon_v16_model_image():
    base = MINIMAL["tryon-v1.6"]
    assert errors(validate("tryon-v1.6", {**base, "model_image": "saved:anna"})) == []
    assert [p.field for p in errors(validate("tryon-v1.6", {**base, "model_image": "saved:"}))] == [
        "model_image"
    ]
    bad = errors(validate("tryon-v1.6", {**base, "garment_image": "saved:anna"}))
    assert [p.field for p in bad] == ["garment_image"]
    bad = errors(validate("tryon-max", {**MINIMAL["tryon-max"], "model_image": "saved:anna"}))
    assert [p.field for p in bad] == ["model_image"]


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_required_string(value):
    problems = errors(validate("edit", {**MINIMAL["edit"], "prompt": value}))
    assert [p.field for p in problems] == ["prompt"]
    assert "empty" in problems[0].message


def test_none_counts_as_missing():
    problems = errors(validate("edit", {"image": URL, "prompt": None}))
    assert [p.field for p in problems] == ["prompt"]


def test_message_does_not_dump_huge_values():
    huge = "x" * 100_000
    (problem,) = errors(validate("edit", {**MINIMAL["edit"], "image": huge}))
    assert len(problem.message) < 300


def test_problem_str_names_field():
    p = Problem("category", "must be one of: auto (got 'x')")
    assert str(p) == "category: must be one of: auto (got 'x')"


# --------------------------------------------------------------------------- cross-field rules


@pytest.mark.parametrize(
    ("res", "ok"), [("1080p", True), (None, True), ("720p", False), ("480p", False)]
)
def test_end_image_only_with_1080p(res, ok):
    inputs: dict[str, object] = {**MINIMAL["image-to-video"], "end_image": URL}
    if res:
        inputs["resolution"] = res
    problems = errors(validate("image-to-video", inputs))
    if ok:
        assert problems == []
    else:
        assert [p.field for p in problems] == ["end_image"]
        assert "1080p" in problems[0].message


@pytest.mark.parametrize("other", ["image_prompt", "background_reference", "face_reference"])
def test_product_to_model_model_image_conflicts(other):
    inputs = {**MINIMAL["product-to-model"], "model_image": URL, other: URL}
    problems = validate("product-to-model", inputs)
    errs = errors(problems)
    assert [p.field for p in errs] == ["model_image"]
    assert other in errs[0].message
    assert any("tryon-max" in p.message for p in warnings(problems))


def test_product_to_model_model_image_alone_is_deprecated_warning():
    problems = validate("product-to-model", {**MINIMAL["product-to-model"], "model_image": URL})
    assert errors(problems) == []
    assert [p.field for p in warnings(problems)] == ["model_image"]


def test_face_to_model_horizontal_ratio_warns():
    problems = validate("face-to-model", {**MINIMAL["face-to-model"], "aspect_ratio": "16:9"})
    assert errors(problems) == []
    assert [p.field for p in warnings(problems)] == ["aspect_ratio"]
    assert (
        warnings(validate("face-to-model", {**MINIMAL["face-to-model"], "aspect_ratio": "9:16"}))
        == []
    )


# --------------------------------------------------------------------------- defaults, formats, latency


def test_resolve_defaults_tryon_v16():
    resolved = resolve_inputs("tryon-v1.6", MINIMAL["tryon-v1.6"])
    assert resolved == {
        "model_image": URL,
        "garment_image": URL,
        "category": "auto",
        "garment_photo_type": "auto",
        "mode": "balanced",
        "moderation_level": "permissive",
        "segmentation_free": True,
        "num_samples": 1,
        "output_format": "png",
        "return_base64": False,
        "seed": 42,
    }


def test_resolve_keeps_given_values_and_unknown_keys():
    resolved = resolve_inputs("edit", {**MINIMAL["edit"], "seed": 7, "extra": "x"})
    assert resolved["seed"] == 7
    assert resolved["extra"] == "x"
    assert resolved["resolution"] == "1k"
    assert resolved["num_images"] == 1
    assert "generation_mode" not in resolved  # server decides


def test_resolve_image_to_video_defaults():
    resolved = resolve_inputs("image-to-video", MINIMAL["image-to-video"])
    assert resolved["duration"] == 5
    assert resolved["resolution"] == "1080p"


def test_resolve_conditional_defaults():
    plain = resolve_inputs("model-create", MINIMAL["model-create"])
    assert plain["aspect_ratio"] == "1:1"
    assert "face_reference_mode" not in plain
    with_refs = resolve_inputs(
        "model-create", {**MINIMAL["model-create"], "image_reference": URL, "face_reference": URL}
    )
    assert "aspect_ratio" not in with_refs
    assert with_refs["face_reference_mode"] == "match_reference"
    assert resolve_inputs("face-to-model", MINIMAL["face-to-model"])["aspect_ratio"] == "2:3"


@pytest.mark.parametrize(
    ("name", "inputs", "fmt"),
    [
        ("face-to-model", {}, "jpeg"),
        ("face-to-model", {"output_format": "png"}, "png"),
        ("edit", {}, "png"),
        ("edit", {"output_format": "jpeg"}, "jpeg"),
        ("tryon-v1.6", {}, "png"),
        ("background-remove", {}, "png"),
        ("background-remove", {"output_format": "jpeg"}, "png"),
        ("image-to-video", {}, "mp4"),
    ],
)
def test_output_format(name, inputs, fmt):
    assert output_format(name, {**MINIMAL[name], **inputs}) == fmt


@pytest.mark.parametrize(
    ("name", "inputs", "low_max", "high_min", "high_max"),
    [
        ("tryon-v1.6", {"mode": "performance"}, 5, 5, 7),
        ("tryon-v1.6", {"mode": "balanced"}, 8, 8, 11),
        ("tryon-v1.6", {"mode": "quality"}, 12, 17, 17),
        ("edit", {"generation_mode": "fast", "resolution": "1k"}, 20, 1, 20),
        ("edit", {"generation_mode": "quality", "resolution": "4k"}, 120, 120, 120),
        ("tryon-max", {"generation_mode": "balanced", "resolution": "1k"}, 30, 1, 30),
        ("tryon-max", {"generation_mode": "quality", "resolution": "4k"}, 120, 120, 120),
        ("background-remove", {}, 1, 3, 3),
        ("background-change", {}, 12, 12, 20),
        ("image-to-video", {"duration": 5}, 60, 120, 120),
    ],
)
def test_latency_matches_reference(name, inputs, low_max, high_min, high_max):
    low, high = expected_latency(name, {**MINIMAL[name], **inputs})
    assert 0 < low <= low_max
    assert high_min <= high <= high_max
    assert low <= high


def test_latency_grows_with_mode_and_resolution():
    base = MINIMAL["edit"]
    fast = expected_latency("edit", {**base, "generation_mode": "fast", "resolution": "1k"})
    quality = expected_latency("edit", {**base, "generation_mode": "quality", "resolution": "4k"})
    assert quality[1] > fast[1]
    assert quality[0] > fast[0]


def test_model_create_face_reference_adds_latency():
    base = {**MINIMAL["model-create"], "generation_mode": "fast", "resolution": "1k"}
    low, high = expected_latency("model-create", base)
    flow, fhigh = expected_latency("model-create", {**base, "face_reference": URL})
    assert (flow - low, fhigh - high) == (20, 30)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_has_latency_and_format(name):
    low, high = expected_latency(name, MINIMAL[name])
    assert 0 < low <= high
    assert output_format(name, MINIMAL[name]) in {"png", "jpeg", "mp4"}


def test_catalogue_data_errors_name_the_file_model_and_problem(tmp_path: Path) -> None:
    from fashn_prefect.api.specs import load_models
    from fashn_prefect.errors import ModelSpecError

    cases = {
        "no-models.json": ("{}", "expected"),
        "bad-type.json": (
            '{"models": {"m1": {"inputs": {"image": {"type": "picture"}}, '
            '"credits": {"per_output": 1}}}}',
            "model 'm1', input 'image': needs a type",
        ),
        "no-credits.json": (
            '{"models": {"m2": {"inputs": {"image": {"type": "image"}}}}}',
            "model 'm2': 'credits' is required",
        ),
        "bad-count.toml": (
            '[models.m3]\noutput_count_field = "n"\ncredits = {per_output = 1}\n'
            '[models.m3.inputs.image]\ntype = "image"\n',
            "model 'm3': output_count_field 'n' is not an input",
        ),
    }
    for name, (text, fragment) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ModelSpecError) as caught:
            load_models(path)
        assert str(path) in str(caught.value) and fragment in str(caught.value)


def test_catalogue_data_model_gets_full_validation_and_estimates() -> None:
    from fashn_prefect.api import specs
    from fashn_prefect.api.specs import load_models

    saved = dict(specs.builtin._REGISTRY)
    try:
        data = {
            "models": {
                "studio-x": {
                    "inputs": {
                        "image": {"type": "image", "required": True},
                        "resolution": {"type": "string", "enum": ["1k", "2k", "4k"]},
                        "num_images": {"type": "integer", "minimum": 1, "maximum": 4},
                    },
                    "output_count_field": "num_images",
                    "credits": {"grid": "standard"},
                }
            }
        }
        assert load_models(data) == ["studio-x"]
        image = "https://cdn.example/a.png"
        assert specs.estimate_credits("studio-x", {"image": image, "num_images": 2}) == 2
        assert specs.estimate_credits("studio-x", {"image": image, "resolution": "4k"}) == 4
        problems = specs.validate("studio-x", {"resolution": "8k"})
        assert {p.field for p in problems if p.level == "error"} == {"image", "resolution"}
    finally:
        specs.builtin._REGISTRY.clear()
        specs.builtin._REGISTRY.update(saved)
    assert "studio-x" not in specs.MODELS
