"""Deprecated entrypoint: use ``fashn_prefect.flows:catalog_run`` (see deployments/prefect.yaml)."""

from fashn_prefect.flows import catalog_run

__all__ = ["catalog_run"]
