"""Webhook delivery: POST the status envelope when a prediction becomes terminal.

Choices ([UNCONFIRMED] in the reference): one first attempt plus up to 5 retries on a non-2xx
answer or a connection error, after 10, 20, 40, 80 and 150 emulated seconds (300 s in total,
time-scaled); 10 s real timeout per attempt; headers ``Content-Type: application/json`` and
``User-Agent: fashn-emulator``; no signature and no ``x-fashn-credits-used`` header. Only loopback
URLs are contacted; attempts to any other host are recorded as failed without network traffic.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from .clock import EmulatedClock
from .inputs import is_loopback_host

RETRY_DELAYS = (10.0, 20.0, 40.0, 80.0, 150.0)
ATTEMPT_TIMEOUT = 10.0

logger = logging.getLogger("fashn_prefect.emulator")


async def deliver_webhook(
    client: httpx.AsyncClient,
    clock: EmulatedClock,
    url: str,
    payload: dict[str, Any],
    record: dict[str, Any],
) -> None:
    """Deliver ``payload`` to ``url`` with retries, updating ``record`` (attempts, delivered)."""
    loopback = is_loopback_host(urlsplit(url).hostname)
    for attempt in range(1 + len(RETRY_DELAYS)):
        if attempt:
            await clock.sleep_until(clock.now() + RETRY_DELAYS[attempt - 1])
        delivered = await _attempt(client, url, payload, attempt, loopback)
        record["attempts"] += 1
        if delivered:
            record["delivered"] = True
            return


async def _attempt(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], attempt: int, loopback: bool
) -> bool:
    if not loopback:
        logger.warning("webhook for %s not sent: only loopback URLs are reachable", payload["id"])
        return False
    try:
        response = await client.post(
            url, json=payload, headers={"User-Agent": "fashn-emulator"}, timeout=ATTEMPT_TIMEOUT
        )
    except httpx.HTTPError as exc:
        logger.info("webhook attempt %d for %s failed: %s", attempt + 1, payload["id"], exc)
        return False
    if 200 <= response.status_code < 300:
        return True
    logger.info(
        "webhook attempt %d for %s got HTTP %d", attempt + 1, payload["id"], response.status_code
    )
    return False
