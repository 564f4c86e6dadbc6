"""The secret token in the webhook URL FASHN calls back.

FASHN signs nothing, so the URL itself is the credential: a delivery without the right
token is refused. Locally the token is random per process; the relay and the runs that
read its events derive theirs from a shared secret (:func:`derived_token`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

__all__ = ["derived_token", "process_token", "token_matches"]

_LOCK = threading.Lock()
_PROCESS_TOKEN: list[str] = []


def process_token() -> str:
    """This process's random webhook token (created on first use, never logged)."""
    with _LOCK:
        if not _PROCESS_TOKEN:
            _PROCESS_TOKEN.append(secrets.token_urlsafe(32))
        return _PROCESS_TOKEN[0]


def derived_token(secret: str, scope: str = "relay") -> str:
    """The token for ``scope`` derived from a shared ``secret`` (HMAC-SHA256), so the
    secret itself never travels in a URL."""
    digest = hmac.new(secret.encode(), f"fashn-webhook:{scope}".encode(), hashlib.sha256)
    return digest.hexdigest()


def token_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())
