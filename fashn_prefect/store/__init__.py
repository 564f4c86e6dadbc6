"""Durable storage under an output root: fsspec helpers, the ledger, results tables, run reports,
and the ``StorageOptions`` block that keeps storage secrets out of parameters (``blocks``).

Owns the on-disk layout (``ledger/``, ``results/``, ``runs/``). May import ``api`` (errors)
and fsspec/pyarrow; never ``run``, ``jobs``, ``review`` or ``cli``.
"""
