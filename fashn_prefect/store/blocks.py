"""Storage credentials from a Prefect block, so no secret sits in a deployment parameter.

:class:`StorageOptions` holds fsspec ``storage_options`` (S3 keys, a GCS token, an Azure
account key, an endpoint...) as a secret dict. Flows take the block's *name* (the
``storage_block`` field of :class:`~fashn_prefect.settings.FashnSettings`), load it on the
worker where storage is used, and merge the plain ``storage_options`` (non-secret
settings) over it; only the name is ever stored as a flow-run parameter, also for the
chunk subflows of a backfill.
"""

from __future__ import annotations

from typing import Any, cast

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field


class StorageOptions(Block):
    """fsspec ``storage_options`` for the output root and the manifest, kept secret.

    Example:
        ```python
        from fashn_prefect.store.blocks import StorageOptions

        StorageOptions(options={"key": "AKIA...", "secret": "..."}).save("catalog-s3")
        options = StorageOptions.load("catalog-s3").storage_options()
        ```
    """

    _block_type_name = "FASHN Storage Options"
    _block_type_slug = "fashn-storage-options"
    _description = "fsspec storage options (keys, tokens, endpoints) for FASHN outputs."
    _documentation_url = "https://github.com/fashn-prefect/fashn-prefect#storage-urls"  # type: ignore[assignment]

    options: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description="fsspec storage_options, e.g. key/secret/client_kwargs for s3fs.",
    )

    def storage_options(self) -> dict[str, Any]:
        """The options as a plain dict, to pass to fsspec (never log it)."""
        return dict(self.options.get_secret_value())


def resolve_storage_options(
    block: str | StorageOptions | None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The block's options (loaded by name if given one) with ``options`` merged over them."""
    if isinstance(block, str):
        block = cast(StorageOptions, StorageOptions.load(block, _sync=True))  # type: ignore[call-arg]
    merged = block.storage_options() if block is not None else {}
    merged.update(options or {})
    return merged
