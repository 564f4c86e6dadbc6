"""Every environment variable fashn-prefect reads, declared once with its default and meaning.

``FASHN_API_KEY`` and ``FASHN_BASE_URL`` are the official ``fashn`` SDK's names; the
package's own variables all start with ``FASHN_PREFECT_``. The documentation's reference
table is generated from :data:`VARIABLES`, so it cannot drift from the code. Prefect's own
variables (``PREFECT_API_URL``...) are Prefect's and documented there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "DEFAULT_BASE_URL",
    "FASHN_API_KEY",
    "FASHN_BASE_URL",
    "FASHN_PREFECT_DEBUG",
    "FASHN_PREFECT_MODELS",
    "FASHN_PREFECT_WEBHOOK_SECRET",
    "VARIABLES",
    "EnvironmentVariable",
]

DEFAULT_BASE_URL = "https://api.fashn.ai"
"""FASHN's API, used when neither a base URL nor ``FASHN_BASE_URL`` is given."""


@dataclass(frozen=True)
class EnvironmentVariable:
    """One variable the package reads: its name, default and meaning."""

    name: str
    default: str | None
    meaning: str
    secret: bool = False

    def get(self) -> str | None:
        """The variable's value; its default when unset or empty."""
        return os.environ.get(self.name) or self.default

    def is_set(self) -> bool:
        """Whether the variable is set to something other than empty, ``0`` or ``false``."""
        return (self.get() or "").strip().lower() not in ("", "0", "false", "no")


FASHN_API_KEY = EnvironmentVariable(
    "FASHN_API_KEY",
    None,
    "The FASHN API key, used when no key or FashnCredentials block is given.",
    secret=True,
)
FASHN_BASE_URL = EnvironmentVariable(
    "FASHN_BASE_URL",
    DEFAULT_BASE_URL,
    "The API's base URL (for example the emulator's, http://127.0.0.1:8765). Plain http is "
    "accepted only for loopback hosts.",
)
FASHN_PREFECT_MODELS = EnvironmentVariable(
    "FASHN_PREFECT_MODELS",
    None,
    "Model spec files (JSON or TOML) to load on top of the built-in table, separated by the "
    "platform's path separator (':' on Linux).",
)
FASHN_PREFECT_DEBUG = EnvironmentVariable(
    "FASHN_PREFECT_DEBUG",
    None,
    "Set to 1 to make the fashn-prefect command print tracebacks and debug logs.",
)
FASHN_PREFECT_WEBHOOK_SECRET = EnvironmentVariable(
    "FASHN_PREFECT_WEBHOOK_SECRET",
    None,
    "The secret the webhook relay and the runs that read its events share (the webhook "
    "URL's token is derived from it); a Secret block named by webhook_secret_block wins.",
    secret=True,
)

VARIABLES: tuple[EnvironmentVariable, ...] = (
    FASHN_API_KEY,
    FASHN_BASE_URL,
    FASHN_PREFECT_MODELS,
    FASHN_PREFECT_DEBUG,
    FASHN_PREFECT_WEBHOOK_SECRET,
)
"""Every variable above, in the order the reference lists them."""
