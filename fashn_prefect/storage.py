"""Object storage through fsspec: URLs, atomic writes and safe object names."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def filesystem(url: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the fsspec filesystem for ``url`` and the path inside it (no trailing slash)."""
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    return fs, path.rstrip("/") or path


def join(root: str, *parts: str) -> str:
    """Join path parts with ``/`` (object-store style, also valid locally)."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def safe_name(key: str, max_length: int = 80) -> str:
    """Turn an arbitrary row key into one file-name component that cannot escape its folder.

    Unsafe characters (``/``, ``..``, ``:``, spaces, unicode) are replaced, leading dots are
    removed, and a hash of the original key keeps distinct keys distinct.
    """
    readable = _UNSAFE.sub("_", key).strip("._")[:max_length] or "row"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{readable}-{digest}"


def atomic_write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` so that readers see either nothing or the whole object.

    Local files are written beside the target and renamed into place; object stores
    (S3, GCS, Azure, memory) publish an object only when its single upload completes.
    """
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if isinstance(fs, LocalFileSystem):
        if parent:
            fs.makedirs(parent, exist_ok=True)
        tmp = join(parent, f".tmp-{uuid.uuid4().hex}") if parent else f".tmp-{uuid.uuid4().hex}"
        try:
            with fs.open(tmp, "wb") as handle:
                handle.write(data)
            fs.mv(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)
        return
    fs.pipe_file(path, data)


def is_hidden(path: str) -> bool:
    """True for temporary or hidden objects that readers must ignore."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith(".") or name.startswith("_")
