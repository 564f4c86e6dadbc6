"""Deprecated entrypoint: use ``fashn_prefect.flows:backfill`` (see deployments/prefect.yaml)."""

from fashn_prefect.flows import backfill

__all__ = ["backfill"]
