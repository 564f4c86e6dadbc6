"""Small preview images for the review gallery, read from wherever a row's images live.

Sources are fsspec paths or URLs (``file://``, ``s3://``, ...), complete ``data:`` URIs and
``http(s)`` URLs on loopback. Other URLs are fetched only when asked (``fetch_remote``);
redirects are never followed. Anything unreadable raises :class:`Unreadable` with a short,
human label for the placeholder tile.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import ipaddress
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageOps

from fashn_prefect.errors import FashnError
from fashn_prefect.store.fs import filesystem

MAX_EDGE = 256
MAX_BYTES = 64 * 1024 * 1024
FETCH_TIMEOUT_S = 5.0


class Unreadable(FashnError):
    """A source that cannot be shown; ``str()`` is the placeholder label."""


def is_loopback_url(value: str) -> bool:
    """True for ``http(s)`` URLs whose host is loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def read_source(
    value: str, storage_options: dict[str, Any] | None = None, fetch_remote: bool = False
) -> bytes:
    """The bytes behind an image value; raises :class:`Unreadable` with the reason."""
    if value.startswith("saved:"):
        raise Unreadable("saved model (not an image)")
    if value.startswith("data:"):
        return _decode_data_uri(value)
    if value.startswith(("http://", "https://")):
        if not (fetch_remote or is_loopback_url(value)):
            raise Unreadable("remote URL (not fetched)")
        return _fetch(value)
    try:
        fs, path = filesystem(value, **(storage_options or {}))
        with fs.open(path, "rb") as handle:
            data: bytes = handle.read(MAX_BYTES + 1)
    except Exception as exc:
        raise Unreadable(f"not readable ({type(exc).__name__})") from exc
    return _capped(data)


def _decode_data_uri(value: str) -> bytes:
    header, _, payload = value.partition(",")
    if not header.endswith(";base64") or "...<" in payload:
        raise Unreadable("data URI (shortened in the table)")
    try:
        return _capped(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise Unreadable("data URI (not valid base64)") from exc


@functools.cache
def _ssl_context(trust_env: bool) -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle, which cost more CPU
    than the rest of a thumbnail (``benchmarks/raised_limits.py``)."""
    return httpx.create_ssl_context(trust_env=trust_env)


def _fetch(url: str) -> bytes:
    try:
        local = is_loopback_url(url)  # never send loopback requests through a proxy
        with httpx.Client(
            timeout=FETCH_TIMEOUT_S,
            follow_redirects=False,
            trust_env=not local,
            verify=_ssl_context(not local),
        ) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise Unreadable(f"URL not reachable ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise Unreadable(f"URL not available (HTTP {response.status_code})")
    return _capped(response.content)


def _capped(data: bytes) -> bytes:
    if len(data) > MAX_BYTES:
        raise Unreadable("image too large to preview")
    return data


def make_thumbnail(data: bytes, max_edge: int = MAX_EDGE) -> tuple[bytes, str]:
    """Shrink image bytes to ``max_edge``; returns ``(bytes, "jpg" | "png")``.

    Images with transparency stay PNG; everything else becomes JPEG.
    """
    try:
        opened = Image.open(io.BytesIO(data))
        opened.draft("RGB", (max_edge, max_edge))
        image: Image.Image = ImageOps.exif_transpose(opened)
        image.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    except Exception as exc:
        raise Unreadable("not an image") from exc
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # No optimize=True: it made each transparent thumbnail about 2 % smaller for ~25 ms
        # more CPU, as much as the rest of a row's work (benchmarks/raised_limits.py).
        image.convert("RGBA").save(buffer, format="PNG")
        return buffer.getvalue(), "png"
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue(), "jpg"
