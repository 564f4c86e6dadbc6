"""Deployable flow: the recurring catalog run (new and changed rows only).

Deploy with ``prefect deploy --all`` from ``deployments/prefect.yaml`` (nightly cron), or
serve it from a shell without a work pool:
``python flows/catalog_run.py MANIFEST OUTPUT`` (same schedule, runs in that process).
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger

from fashn_prefect.incremental import run_catalog
from fashn_prefect.outcome import state_for


@flow(name="fashn-catalog-run", log_prints=False)
async def catalog_run(
    manifest: str,
    output: str,
    model_name: str | None = None,
    credentials: str | None = None,
    max_in_flight: int = 6,
    run_limit: str = "50/60",
    status_limit: str = "50/10",
    budget: int | None = None,
    skip_invalid: bool = False,
    retry_failed: bool = False,
    write_csv: bool = False,
    time_scale: float = 1.0,
    shared_limits: bool | None = None,
    storage_options: dict[str, Any] | None = None,
    storage_block: str | None = None,
    allowed_failures: str = "0",
) -> dict[str, Any]:
    """Run the rows of a catalog manifest that are new or changed since earlier runs.

    ``manifest`` is the URI of the catalog the business keeps updating (CSV or Parquet on
    any fsspec URL); ``output`` is the output root shared by every run of this catalog.
    Rows that already completed there with the same inputs are not submitted, so an
    unchanged catalog costs zero submissions. ``credentials`` names a ``FashnCredentials``
    block (default: the ``FASHN_API_KEY``/``FASHN_BASE_URL`` environment variables).
    Rows that failed with a permanent error for the same inputs are not submitted again
    unless ``retry_failed`` is set. The flow run ends Failed when more rows failed than
    ``allowed_failures`` allows (a count such as ``"5"`` or a percentage such as ``"2%"``).
    """
    result = await run_catalog(
        manifest,
        output,
        model_name=model_name,
        storage_options=storage_options,
        storage_block=storage_block,
        logger=get_run_logger(),
        credentials=credentials,
        max_in_flight=max_in_flight,
        run_limit=run_limit,
        status_limit=status_limit,
        budget=budget,
        skip_invalid=skip_invalid,
        retry_failed=retry_failed,
        write_csv=write_csv,
        time_scale=time_scale,
        shared_limits=shared_limits,
        allowed_failures=allowed_failures,
    )
    return cast(dict[str, Any], state_for(result["run"], result))


if __name__ == "__main__":
    import sys

    catalog_run.serve(
        name="catalog-nightly",
        cron="0 2 * * *",
        parameters=dict(manifest=sys.argv[1], output=sys.argv[2]),
    )
