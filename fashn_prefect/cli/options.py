"""CLI options generated from :class:`~fashn_prefect.settings.FashnSettings`.

A command decorated with :func:`settings_options` gets one option per settings field,
named after it (``max_in_flight`` -> ``--max-in-flight``, help from the field's
description), and receives them validated as one ``settings`` argument. Old flag names
stay as hidden aliases.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from fashn_prefect.cli.errors import fail
from fashn_prefect.settings import FashnSettings

__all__ = ["ALIASES", "settings_options"]

F = TypeVar("F", bound=Callable[..., Any])

# Old flag -> settings field (hidden; kept for one release).
ALIASES = {"max_concurrency": "max_in_flight", "csv": "write_csv"}
# Fields that have no flag: fsspec options come from the environment or fsspec config.
NOT_ON_CLI = frozenset({"storage_options"})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option(name: str, annotation: Any, default: Any, help_text: str | None) -> inspect.Parameter:
    decls = [_flag(name)]
    if annotation in (bool, bool | None):
        decls = [f"{_flag(name)}/--no-{_flag(name)[2:]}"]
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, typer.Option(*decls, help=help_text)],
    )


def _alias(name: str, annotation: Any) -> inspect.Parameter:
    if annotation is bool:
        option = typer.Option(_flag(name), hidden=True)
        return inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, option]
        )
    option = typer.Option(_flag(name), hidden=True)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[annotation | None, option],
    )


def _problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{_flag(where)}: {error.get('msg', 'invalid value')}"


def settings_options(command: F) -> F:
    """Give ``command`` the settings flags; it receives them as ``settings: FashnSettings``."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    fields = {n: f for n, f in FashnSettings.model_fields.items() if n not in NOT_ON_CLI}
    added = [
        _option(name, field.annotation, field.get_default(), field.description)
        for name, field in fields.items()
    ]
    added += [_alias(alias, fields[target].annotation) for alias, target in ALIASES.items()]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        for alias, target in ALIASES.items():
            value = kwargs.pop(alias)
            if value not in (None, False):
                kwargs[target] = value
        values = {name: kwargs.pop(name) for name in fields}
        try:
            settings = FashnSettings(**values)
        except ValidationError as exc:
            fail(_problem(exc), f"see `fashn-prefect {command.__name__} --help`")
        return command(**kwargs, settings=settings)

    parameters = [*own, *added]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper  # type: ignore[return-value]
