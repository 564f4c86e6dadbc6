"""The jobs built on a run: incremental catalog runs, chunked backfills, credit audits.

May import ``run`` and everything below it; never ``cli``.
"""
