"""Loading input images the way the real API does: fetch URLs, decode data URIs.

Choices (the reference leaves them open, [UNCONFIRMED]):

* Only loopback ``http(s)`` URLs (127.0.0.0/8, ::1, ``localhost``) are fetched; the emulator never
  touches the outside network, so any other host fails with ``ImageLoadError``
  ("... only loopback URLs can be fetched by the emulator").
* Redirects are not followed; any non-2xx answer is an ``ImageLoadError``.
* ``saved:<name>`` (tryon-v1.6 ``model_image``) yields a generated placeholder person image.
* Messages follow the documented form ``Error loading <field words>: <reason>``.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import re
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from .media import placeholder_person

MAX_INPUT_BYTES = 50 * 1024 * 1024
_DATA_URI = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)


class ImageLoadFailure(Exception):
    """An input image could not be loaded; ``str(exc)`` is the API's error message."""


def field_words(field_name: str) -> str:
    """``"model_image"`` -> ``"model image"`` (as in "Error loading model image: ...")."""
    return field_name.replace("_", " ")


def is_loopback_host(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _decode(data: bytes, field: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadFailure(
            f"Error loading {field_words(field)}: the image could not be decoded ({type(exc).__name__})"
        ) from None
    return image


def decode_data_uri(value: str, field: str) -> Image.Image:
    """Decode ``data:image/<fmt>;base64,<data>`` or raise :class:`ImageLoadFailure`."""
    match = _DATA_URI.match(value)
    if match is None:
        raise ImageLoadFailure(
            f"Error loading {field_words(field)}: Invalid base64 image format, expected "
            "data:image/<format>;base64,<data>"
        )
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ImageLoadFailure(f"Error loading {field_words(field)}: Invalid base64 data") from None
    return _decode(data, field)


async def fetch_url(client: httpx.AsyncClient, url: str, field: str) -> Image.Image:
    """GET a loopback URL and decode it, with the real API's failure modes."""
    words = field_words(field)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageLoadFailure(f"Error loading {words}: Invalid URL format")
    if not is_loopback_host(parts.hostname):
        raise ImageLoadFailure(
            f"Error loading {words}: could not fetch {parts.hostname} "
            "(only loopback URLs can be fetched by the emulator)"
        )
    try:
        response = await client.get(url, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ImageLoadFailure(
            f"Error loading {words}: could not fetch the URL ({type(exc).__name__})"
        ) from None
    if not 200 <= response.status_code < 300:
        raise ImageLoadFailure(
            f"Error loading {words}: could not fetch the URL (HTTP {response.status_code})"
        )
    content_type = response.headers.get("content-type", "")
    if not content_type.lower().startswith("image/"):
        raise ImageLoadFailure(
            f"Error loading {words}: The URL's Content-Type is not an image. "
            f"Content-Type: {content_type or '(none)'}"
        )
    if len(response.content) > MAX_INPUT_BYTES:
        raise ImageLoadFailure(f"Error loading {words}: the image is too large")
    return _decode(response.content, field)


async def load_image(client: httpx.AsyncClient, value: object, field: str) -> Image.Image:
    """Load one image input: loopback URL, data URI or ``saved:<name>``."""
    if not isinstance(value, str):
        raise ImageLoadFailure(f"Error loading {field_words(field)}: Invalid URL format")
    if value.startswith("data:"):
        return decode_data_uri(value, field)
    if value.startswith("saved:") and len(value) > len("saved:"):
        return placeholder_person(value[len("saved:") :])
    return await fetch_url(client, value, field)
