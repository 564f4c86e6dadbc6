"""Model specs: what each FASHN model takes, costs, returns and how long it runs.

- :mod:`~fashn_prefect.api.specs.types`: the types (:class:`ModelSpec`, :class:`InputField`,
  :class:`CreditRule`, :class:`Problem`);
- :mod:`~fashn_prefect.api.specs.builtin`: the built-in table of FASHN's models;
- :mod:`~fashn_prefect.api.specs.rules`: validation, defaults, output count, credits,
  latency and output format of one prediction;
- :mod:`~fashn_prefect.api.specs.files`: more models described as data (JSON or TOML
  files, ``FASHN_PREFECT_MODELS``).
"""

from __future__ import annotations

from fashn_prefect.api.specs.builtin import BUILTIN_MODELS, GENERIC_LATENCY, MODELS, register_model
from fashn_prefect.api.specs.files import load_models, load_models_from_env
from fashn_prefect.api.specs.rules import (
    CROSS_FIELD_INPUTS,
    estimate_credits,
    expected_latency,
    generic_problems,
    get_model,
    image_value_problem,
    is_image_input_name,
    output_count,
    output_format,
    resolve_inputs,
    validate,
)
from fashn_prefect.api.specs.types import (
    CreditRule,
    FieldType,
    InputField,
    Latency,
    Lifecycle,
    ModelSpec,
    Problem,
)

__all__ = [
    "BUILTIN_MODELS",
    "CROSS_FIELD_INPUTS",
    "GENERIC_LATENCY",
    "MODELS",
    "CreditRule",
    "FieldType",
    "InputField",
    "Latency",
    "Lifecycle",
    "ModelSpec",
    "Problem",
    "estimate_credits",
    "expected_latency",
    "generic_problems",
    "get_model",
    "image_value_problem",
    "is_image_input_name",
    "load_models",
    "load_models_from_env",
    "output_count",
    "output_format",
    "register_model",
    "resolve_inputs",
    "validate",
]
