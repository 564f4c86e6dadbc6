"""The FASHN HTTP API: the async client, its errors, the model specs (``models``), outputs.

Owns everything about talking to ``/v1/run``, ``/v1/status`` and ``/v1/credits``.
HTTP only: imports httpx and the standard library, never Prefect, storage or other layers.
"""
