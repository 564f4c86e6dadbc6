"""Deprecated: the deployable flows now ship in the package as :mod:`fashn_prefect.flows`.

These files only re-export them, so deployments whose entrypoint still reads
``flows/catalog_run.py:catalog_run`` keep working for one release.
"""
