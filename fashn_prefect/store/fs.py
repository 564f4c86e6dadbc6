"""Object storage through fsspec: URLs, atomic writes and safe object names."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from fashn_prefect.errors import StorageTimeout

T = TypeVar("T")

DEFAULT_STORAGE_TIMEOUT = 120.0
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


async def bounded(timeout: float | None, what: str, func: Callable[..., T], *args: Any) -> T:
    """Run the blocking storage call ``func(*args)`` in a thread, for at most ``timeout`` s.

    Raises :class:`~fashn_prefect.errors.StorageTimeout` (an ``OSError``) naming ``what``
    when the call has not returned in time. The call runs in its own daemon thread, so a
    store that never answers can neither exhaust the event loop's thread pool nor keep
    the process alive at exit; an abandoned call may still finish later.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            result = func(*args)
        except BaseException as exc:
            error = exc
            _call_soon(loop, lambda: settle(lambda: future.set_exception(error)))
        else:
            _call_soon(loop, lambda: settle(lambda: future.set_result(result)))

    threading.Thread(target=work, name=f"storage: {what}", daemon=True).start()
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise StorageTimeout(
            f"storage did not answer within {timeout:g} s while {what}; check that the "
            "output location is reachable (raise storage_timeout for slow stores)"
        ) from None


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    # RuntimeError: the loop has closed, so nobody is waiting for this call any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def is_storage_transport_error(exc: object) -> bool:
    """True for botocore's connection and timeout errors (not OSErrors) from S3 storage."""
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # botocore comes only with the s3 extra
        return False
    return isinstance(exc, BotoConnectionError | HTTPClientError)
