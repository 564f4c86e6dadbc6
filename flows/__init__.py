"""Deployable Prefect flows (catalog runs, backfills, credit audits)."""
