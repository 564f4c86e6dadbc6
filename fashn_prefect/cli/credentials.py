"""``fashn-prefect credentials``: save the FashnCredentials block the deployments load."""

from __future__ import annotations

from typing import Annotated

import typer


def credentials_command(
    name: Annotated[
        str, typer.Argument(help="Block name (the deployments use 'fashn').")
    ] = "fashn",
    base_url: Annotated[
        str | None,
        typer.Option(help="API base URL (default: FASHN_BASE_URL, else the real API)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a block of the same name.")] = False,
) -> None:
    """Save a FashnCredentials block on the Prefect server (PREFECT_API_URL).

    The key is read from FASHN_API_KEY, or asked for without echo; it is never printed.
    """
    from fashn_prefect.credentials import FashnCredentials  # imports Prefect
    from fashn_prefect.environment import DEFAULT_BASE_URL, FASHN_API_KEY, FASHN_BASE_URL

    key = FASHN_API_KEY.get() or typer.prompt("FASHN API key", hide_input=True)
    url = base_url or FASHN_BASE_URL.get() or DEFAULT_BASE_URL
    block = FashnCredentials(api_key=key, base_url=url)
    try:
        block.save(name, overwrite=overwrite)
    except ValueError as exc:  # Prefect's "already exists" (and other refusals)
        typer.echo(f"error: {exc}", err=True)
        typer.echo("hint: pass --overwrite to replace it", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Saved FashnCredentials block {name!r} ({url}, account {block.account_id}).")
