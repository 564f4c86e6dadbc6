"""The ``FashnCredentials`` Prefect block: where the API key and base URL live."""

from __future__ import annotations

import hashlib
from typing import Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from fashn_prefect.api.client import FashnClient
from fashn_prefect.environment import DEFAULT_BASE_URL, FASHN_API_KEY, FASHN_BASE_URL


class FashnCredentials(CredentialsBlock):
    """FASHN API credentials: an API key (kept secret) and the API's base URL.

    Example:
        ```python
        from fashn_prefect.credentials import FashnCredentials

        FashnCredentials(api_key="fa-...").save("prod")
        creds = FashnCredentials.load("prod")
        ```
    """

    _block_type_name = "FASHN Credentials"
    _block_type_slug = "fashn-credentials"
    _documentation_url = "https://github.com/fashn-prefect/fashn-prefect#using-the-real-api"  # type: ignore[assignment]
    _description = "API key and base URL for the FASHN image-generation API."

    api_key: SecretStr = Field(
        default=...,
        description="FASHN API key (Bearer token); never logged or shown.",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="API base URL; point it at the emulator for offline runs.",
    )
    allow_insecure_base_url: bool = Field(
        default=False,
        description="Allow a plain-http base URL to a host other than loopback.",
    )
    account: str | None = Field(
        default=None,
        description="Name shared by every key of the same FASHN account. FASHN's limits "
        "(6 in flight, 50 runs/60 s, 50 status calls/10 s) are per account: give all its "
        "keys the same name so their runs share one set of limits. Default: each key is "
        "its own account.",
    )

    @classmethod
    def from_env(cls) -> FashnCredentials:
        """Build credentials from ``FASHN_API_KEY`` and ``FASHN_BASE_URL``."""
        key = FASHN_API_KEY.get()
        if not key:
            from fashn_prefect.errors import ConfigurationError

            raise ConfigurationError(
                "No FASHN API key: set FASHN_API_KEY or pass a FashnCredentials block."
            )
        return cls(
            api_key=SecretStr(key),
            base_url=FASHN_BASE_URL.get() or DEFAULT_BASE_URL,
        )

    def get_client(self, *args: Any, **kwargs: Any) -> FashnClient:
        """Return a new async :class:`FashnClient` configured with these credentials."""
        kwargs.setdefault("allow_insecure_base_url", self.allow_insecure_base_url)
        return FashnClient(
            api_key=self.api_key.get_secret_value(), base_url=self.base_url, **kwargs
        )

    @property
    def account_id(self) -> str:
        """A stable, non-secret name for the account: ``acct-`` plus a hash of ``account``
        when set (so several keys share it), else of the key."""
        name = f"account:{self.account}" if self.account else self.api_key.get_secret_value()
        digest = hashlib.sha256(name.encode()).hexdigest()
        return f"acct-{digest[:10]}"


def resolve_credentials(credentials: FashnCredentials | str | None) -> FashnCredentials:
    """Return the given block, load it by name, or fall back to the environment."""
    if isinstance(credentials, FashnCredentials):
        return credentials
    if isinstance(credentials, str) and credentials:
        # ``_sync``: inside a flow's event loop ``load`` would otherwise return a coroutine.
        loaded = FashnCredentials.load(credentials, _sync=True)  # type: ignore[call-arg]
        assert isinstance(loaded, FashnCredentials)
        return loaded
    return FashnCredentials.from_env()
