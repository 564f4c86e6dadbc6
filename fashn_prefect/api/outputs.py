"""Pure helpers for prediction outputs: data URIs, expiry markers, file types.

An output's file type is taken from its content's magic bytes first, then from the URL's
suffix, and only then from the ``Content-Type`` header: CDNs commonly answer a generic
``binary/octet-stream`` or ``application/octet-stream``, which would save a PNG as ``.bin``.

FASHN returns outputs as CDN URLs, or as ``data:<type>;base64,...`` URIs when
``return_base64`` is set. Base64 outputs are kept for 60 minutes; after that the status
endpoint returns the literal ``"<base64>_expired"`` in place of the data. The reference does
not say whether the literal replaces the whole string or only the payload after the
``base64,`` prefix, so both forms are recognised.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes

EXPIRED_BASE64 = "<base64>_expired"

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "application/json": "json",
    "text/plain": "txt",
}

_GUESSES = {f".{ext}": mime for mime, ext in _EXTENSIONS.items() if mime != "image/jpg"} | {
    ".jpeg": "image/jpeg"
}


def is_expired_base64(ref: str) -> bool:
    """True when ``ref`` is the placeholder FASHN returns for an expired base64 output."""
    text = ref.strip()
    if text == EXPIRED_BASE64:
        return True
    # Real base64 never contains "_", so a data URI ending in "_expired" is the marker.
    return text.startswith("data:") and text.endswith("_expired")


def decode_data_uri(ref: str) -> tuple[bytes, str]:
    """Decode a ``data:`` URI into (bytes, media type). Raises ValueError when malformed."""
    if not ref.startswith("data:"):
        raise ValueError("not a data URI")
    header, sep, payload = ref[5:].partition(",")
    if not sep:
        raise ValueError("malformed data URI: no ',' separating header and data")
    params = [part.strip() for part in header.split(";")]
    is_base64 = len(params) > 1 and params[-1].lower() == "base64"
    if is_base64:
        params = params[:-1]
    media_type = params[0].lower() if params and params[0] else "text/plain"
    if not is_base64:
        return unquote_to_bytes(payload), media_type
    compact = "".join(payload.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True), media_type
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"malformed base64 data in data URI ({media_type})") from exc


def media_type(content_type: str | None) -> str | None:
    """The bare, lower-cased media type of a Content-Type header value (no parameters)."""
    if not content_type:
        return None
    bare = content_type.split(";", 1)[0].strip().lower()
    return bare or None


def guess_media_type(path: str) -> str:
    """Guess a media type from a URL path's suffix; ``application/octet-stream`` if unknown."""
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    if dot >= 0:
        guessed = _GUESSES.get(name[dot:])
        if guessed:
            return guessed
    return "application/octet-stream"


def sniff_media_type(data: bytes) -> str | None:
    """The media type the content's magic bytes announce (png, jpeg, gif, webp, avif, mp4,
    webm), or None when they announce none of these."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "image/avif" if data[8:12] in (b"avif", b"avis") else "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def output_media_type(data: bytes, url_path: str | None, header: str | None) -> str:
    """An output's media type: magic bytes, else the URL suffix, else the Content-Type."""
    sniffed = sniff_media_type(data)
    if sniffed:
        return sniffed
    if url_path:
        guessed = guess_media_type(url_path)
        if guessed != "application/octet-stream":
            return guessed
    return media_type(header) or "application/octet-stream"


def extension_for(content_type: str) -> str:
    """File extension (without dot) for a media type: ``png``, ``jpg``, ``mp4``, ... or ``bin``."""
    return _EXTENSIONS.get(media_type(content_type) or "", "bin")
