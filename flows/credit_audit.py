"""Deprecated entrypoint: use ``fashn_prefect.flows:credit_audit`` (see deployments/prefect.yaml)."""

from fashn_prefect.flows import credit_audit

__all__ = ["credit_audit"]
