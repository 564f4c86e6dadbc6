"""Reviewing a run's outputs: the HTML gallery, its thumbnails, the audit chart.

May import ``api`` (model specs) and ``store`` (results tables, fsspec); never ``run``,
``jobs`` or ``cli``.
"""
