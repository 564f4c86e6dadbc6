"""Reference tables generated from the code, and the mkdocs hook that puts them in the pages.

Not part of the package: ``mkdocs.yml`` loads this file as a hook (``hooks:``), and
``tests/test_docs_reference.py`` imports it to check that every settings field, command and
environment variable has an entry. Each table is built from the code at build time, so the
documentation cannot drift from it:

* ``<!-- settings-table -->``: :class:`fashn_prefect.settings.FashnSettings`' fields (type,
  default, CLI flag, description);
* ``<!-- cli-reference -->``: every command of the Typer app ``fashn_prefect.cli.app:app``
  with its arguments and options, read through click's introspection;
* ``<!-- environment-table -->``: :data:`fashn_prefect.environment.VARIABLES`;
* ``<!-- results-schema -->``: the results table's columns
  (:data:`fashn_prefect.store.results.SCHEMA`), with the meaning of each kept below.

A page includes one by holding its marker alone on a line. A second hook, ``on_page_content``,
drops the Sphinx roles (``:class:``...) that the package's docstrings use and mkdocstrings
leaves in the text.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "MARKERS",
    "RESULT_COLUMN_MEANINGS",
    "cli_reference",
    "environment_table",
    "on_page_markdown",
    "render_markers",
    "results_schema_table",
    "settings_table",
]


def _cell(text: Any) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    value = " ".join(str(text).split())
    return value.replace("|", "\\|")


def _code(text: Any) -> str:
    value = str(text)
    if "`" in value:
        return f"`` {value} ``"
    return f"`{value}`"


def _type_name(annotation: Any) -> str:
    """A readable name for a type annotation (``int``, ``float | None``, ``dict[str, Any]``)."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is Any:
        return "Any"
    return getattr(annotation, "__name__", str(annotation))


# --- settings ---------------------------------------------------------------------------------


def _settings_flags() -> dict[str, str]:
    """Settings field -> its flag on ``fashn-prefect run`` (as click declares it)."""
    import typer.main

    from fashn_prefect.cli.app import app

    group = typer.main.get_command(app)
    run = group.commands["run"]  # type: ignore[attr-defined]
    flags: dict[str, str] = {}
    for param in run.params:
        if getattr(param, "hidden", False) or not param.name:
            continue
        decls = list(param.opts) + [f"--{o[2:]}" for o in getattr(param, "secondary_opts", [])]
        flags[param.name] = " / ".join(decls)
    return flags


def settings_table() -> str:
    """Every :class:`FashnSettings` field: type, default, CLI flag and description."""
    from fashn_prefect.settings import FashnSettings

    flags = _settings_flags()
    lines = [
        "| field | type | default | CLI flag | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in FashnSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        flag = flags.get(name)
        lines.append(
            "| "
            + " | ".join(
                [
                    _code(name),
                    _code(_type_name(field.annotation)),
                    _code(repr(default)),
                    _code(flag) if flag else "(none: Python and YAML only)",
                    _cell(field.description or ""),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


# --- CLI --------------------------------------------------------------------------------------


def _type_of(param: Any, ctx: Any) -> str:
    """The parameter's type as the command's ``--help`` shows it (``int``, ``float range``)."""
    try:
        shown = param.display_type(ctx)  # typer >= 0.2x (its own click)
    except TypeError:
        shown = getattr(getattr(param, "type", None), "name", "")
    except AttributeError:
        shown = getattr(getattr(param, "type", None), "name", "")
    return str(shown).strip("<>")


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _param_rows(params: Iterable[Any], ctx: Any) -> list[str]:
    rows: list[str] = []
    for param in params:
        if getattr(param, "hidden", False):
            continue
        if _is_argument(param):
            kind = "argument"
            names = str(param.name).upper()
        else:
            kind = "option"
            names = ", ".join(param.opts)
            if param.secondary_opts:
                names += " / " + ", ".join(param.secondary_opts)
        help_text = getattr(param, "help", None) or ""
        required = "yes" if param.required else ""
        default = param.default
        if callable(default) or default is None or param.required or default in ((), "", []):
            default_text = ""
        else:
            default_text = _code(default)
        rows.append(
            "| "
            + " | ".join(
                [
                    _code(names),
                    kind,
                    _cell(_type_of(param, ctx)),
                    required,
                    default_text,
                    _cell(help_text),
                ]
            )
            + " |"
        )
    return rows


def _usage(name: str, command: Any) -> str:
    """``fashn-prefect NAME [OPTIONS] ARG [OPTIONAL_ARG]``."""
    pieces = [f"fashn-prefect {name}", "[OPTIONS]"]
    for param in command.params:
        if _is_argument(param):
            arg = str(param.name).upper()
            pieces.append(arg if param.required else f"[{arg}]")
    return " ".join(pieces)


def _help_text(text: str | None) -> str:
    """A command's help as Markdown paragraphs (click keeps paragraphs apart with blank lines)."""
    if not text:
        return ""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    out = []
    for p in paragraphs:
        example = re.fullmatch(r"(Example: )?((?:[A-Z_]+=\S+ )*fashn-prefect .*?)(, then .*)?", p)
        if example:
            prefix, command, rest = example.groups()
            out.append(f"{prefix or ''}`{command}`{rest or ''}")
        else:
            out.append(p)
    return "\n\n".join(out)


def command_names() -> list[str]:
    """The ``fashn-prefect`` commands, visible ones, in the app's order."""
    import typer.main

    from fashn_prefect.cli.app import app

    group = typer.main.get_command(app)
    return [n for n, c in group.commands.items() if not c.hidden]  # type: ignore[attr-defined]


def cli_reference() -> str:
    """Every ``fashn-prefect`` command: usage, help, arguments and options."""
    import typer.main

    from fashn_prefect.cli.app import app

    group = typer.main.get_command(app)
    root_ctx = group.context_class(group, info_name="fashn-prefect")
    header = [
        "| name | kind | type | required | default | help |",
        "|---|---|---|---|---|---|",
    ]
    parts = [
        "### `fashn-prefect`",
        "",
        _help_text(group.help),
        "",
        *header,
        *_param_rows(group.params, root_ctx),
        "",
    ]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if command.hidden:
            continue
        ctx = command.context_class(command, info_name=name, parent=root_ctx)
        parts += [
            f"### `fashn-prefect {name}`",
            "",
            "```text",
            _usage(name, command),
            "```",
            "",
            _help_text(command.help),
            "",
            *header,
            *_param_rows(command.params, ctx),
            "",
        ]
    return "\n".join(parts)


# --- environment ------------------------------------------------------------------------------


def environment_table() -> str:
    """Every environment variable the package reads (:data:`fashn_prefect.environment.VARIABLES`)."""
    from fashn_prefect.environment import VARIABLES

    lines = ["| variable | default | secret | meaning |", "|---|---|---|---|"]
    for var in VARIABLES:
        lines.append(
            f"| {_code(var.name)} | {_code(var.default) if var.default else '(unset)'} "
            f"| {'yes' if var.secret else ''} | {_cell(var.meaning)} |"
        )
    return "\n".join(lines) + "\n"


# --- results table ----------------------------------------------------------------------------

RESULT_COLUMN_MEANINGS: dict[str, str] = {
    "row": "Position of the row in the manifest (1-based, file order).",
    "row_key": "The row's key: its `row_id`, or a key derived from the model name and inputs.",
    "status": "`completed`, `failed`, `invalid` (refused by validation under `skip_invalid`, "
    "error `InvalidRow`) or `skipped` (completed with the same inputs in an earlier run).",
    "model_name": "The FASHN model asked for.",
    "inputs_json": "The inputs sent, as JSON (data URIs shortened).",
    "inputs_hash": "Hash of the inputs: a changed input is a new submission.",
    "generation_mode": "The row's `generation_mode`, when it has one.",
    "resolution": "The row's `resolution`, when it has one.",
    "prediction_ids": "Every prediction created for the row, oldest first.",
    "attempts": "Submissions made for the row. A retried runtime error (`PipelineError`...) is "
    "a new prediction and adds one; a `BadRequest` at submission is 1 attempt with no id.",
    "ambiguous": "True when a submission's fate was unknown (dropped connection or kill during "
    "`POST /v1/run`); kept by every later run that skips the row.",
    "error_name": "The FASHN error (`ImageLoadError`, `ContentModerationError`...) or the "
    "pipeline's own (`AmbiguousSubmission`, `OutputMissing`, `OutputUnavailable`, "
    "`InvalidRow`, `canceled`, `time_out`...).",
    "error_message": "The error's message.",
    "estimated_credits": "The model specs' estimate for the row (0 for skipped and invalid "
    "rows, and for models the specs do not describe).",
    "credits_charged": "Credits the row's predictions were charged.",
    "credits_source": "`header` (the API's `x-fashn-credits-used`), `estimate` (no header: "
    "the estimate is booked) or `unknown` (no header, unknown model: booked as 0).",
    "output_count": "Outputs stored.",
    "output_uris": "Where the outputs are stored (under `images/`).",
    "submitted_at": "When the row's last prediction was submitted (UTC).",
    "completed_at": "When it was seen terminal (UTC).",
    "interrupted_at": "When the row's latest interrupted submission was sent (UTC): the "
    "connection dropped or the process died before FASHN's answer arrived, so that "
    "prediction may exist and be charged. The credit audit ties unexplained balance "
    "movement to these times.",
    "latency_s": "Seconds from submission to completion; a later run learns the API's "
    "latency from it.",
    "completion_seen_by": "How the run learned that the prediction ended: `webhook` (a "
    "delivery, confirmed by one status call) or `poll`.",
    "detection_delay_s": "Real seconds from the prediction's end to the run seeing it: for a "
    "webhook, from the delivery to the confirming answer; for a poll, an estimate (half the "
    "time since the last answer that showed it running).",
    "flow_run_id": "The Prefect flow run that wrote the row.",
    "run_started_at": "When that run started (UTC).",
}


def results_schema_table() -> str:
    """The results table's columns with their Arrow types and meanings."""
    from fashn_prefect.store.results import SCHEMA

    lines = ["| column | Arrow type | meaning |", "|---|---|---|"]
    for field in SCHEMA:
        meaning = RESULT_COLUMN_MEANINGS.get(field.name, "")
        lines.append(f"| {_code(field.name)} | {_code(field.type)} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


# --- the hook ---------------------------------------------------------------------------------

MARKERS: dict[str, Callable[[], str]] = {
    "<!-- settings-table -->": settings_table,
    "<!-- cli-reference -->": cli_reference,
    "<!-- environment-table -->": environment_table,
    "<!-- results-schema -->": results_schema_table,
}


def render_markers(markdown: str) -> str:
    """``markdown`` with every marker line replaced by its generated table."""
    for marker, build in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, build())
    return markdown


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs hook: fill in the generated tables."""
    return render_markers(markdown)


_SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):(<code>)~?")


def on_page_content(html: str, **_: Any) -> str:
    """mkdocs hook: drop the Sphinx roles (``:class:`X```) the package's docstrings use,
    which mkdocstrings leaves in the text, keeping the name as code."""
    return _SPHINX_ROLE.sub(r"\1", html)
