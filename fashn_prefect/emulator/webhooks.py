"""Webhook delivery: POST the status envelope when a prediction becomes terminal.

Choices ([UNCONFIRMED] in the reference): one first attempt plus up to 5 retries on a non-2xx
answer or a connection error, after 10, 20, 40, 80 and 150 emulated seconds (300 s in total,
time-scaled); 10 s real timeout per attempt; headers ``Content-Type: application/json`` and
``User-Agent: fashn-emulator``; no signature and no ``x-fashn-credits-used`` header. Only loopback
URLs are contacted; attempts to any other host are recorded as failed without network traffic.
Fault switches (``webhook_drop``, ``webhook_duplicate``, ``webhook_delay``,
``webhook_fail_attempts``) drop, repeat, delay and fail deliveries.
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
    faults: dict[str, Any] | None = None,
) -> None:
    """Deliver ``payload`` to ``url`` with retries, updating ``record`` (attempts, delivered).

    ``faults`` are the switches drawn for this prediction: ``dropped`` (never sent),
    ``copies`` (2: delivered twice), ``delay`` (emulated seconds before the first attempt)
    and ``fail_attempts`` (that many first attempts fail without reaching ``url``).
    """
    faults = faults or {}
    if faults.get("dropped"):
        return
    if faults.get("delay"):
        await clock.sleep_until(clock.now() + float(faults["delay"]))
    for _ in range(int(faults.get("copies", 1))):
        await _deliver_once(
            client, clock, url, payload, record, int(faults.get("fail_attempts", 0))
        )


async def _deliver_once(
    client: httpx.AsyncClient,
    clock: EmulatedClock,
    url: str,
    payload: dict[str, Any],
    record: dict[str, Any],
    fail_first: int,
) -> None:
    loopback = is_loopback_host(urlsplit(url).hostname)
    for attempt in range(1 + len(RETRY_DELAYS)):
        if attempt:
            await clock.sleep_until(clock.now() + RETRY_DELAYS[attempt - 1])
        # ``attempts`` counts finished attempts, so a reader never sees an attempt counted
        # whose outcome is not yet recorded.
        if attempt < fail_first:
            logger.info("webhook attempt %d for %s failed (injected)", attempt + 1, payload["id"])
            record["attempts"] += 1
            continue
        delivered = await _attempt(client, url, payload, attempt, loopback)
        record["delivered"] = record["delivered"] or delivered
        record["attempts"] += 1
        if delivered:
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
