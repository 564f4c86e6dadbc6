"""The FASHN HTTP API: the async client (``client``), its parsed answers (``responses``),
retry timing (``retry``), output decoding (``outputs``) and the model specs (``specs``).

Owns everything about talking to ``/v1/run``, ``/v1/status`` and ``/v1/credits``.
HTTP only: imports httpx, the standard library, ``environment`` and ``errors``; never
Prefect, storage or other layers.
"""
