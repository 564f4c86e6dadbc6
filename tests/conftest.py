"""Shared fixtures: a Prefect test server, S3 on a local moto server, and output helpers.

None of them is autouse: a test asks for what it needs. Tests marked ``unit`` (the inner
loop, ``make unit``) are held to their promise instead: they may not start a server nor
sleep, and fail at once if they try.

* ``prefect_harness`` (session): a temporary Prefect API server and database
  (``prefect_test_harness``); ``PREFECT_API_URL`` points at it while it runs. The one
  harness of every suite (the reliability suite included).
* ``moto_server`` (session): a moto S3 server on a free loopback port.
* ``s3_storage_options``: s3fs options for that server (dummy keys, loopback endpoint).
* ``s3_bucket``: a fresh, empty bucket per test; yields ``s3://<bucket>``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _servers import free_port

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server_and_sleep_for_nothing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``unit`` test that listens on a socket or sleeps in real time fails at once."""
    if request.node.get_closest_marker("unit") is None:
        return
    import socket
    import time

    def no_server(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a unit test may not start a server (mark it otherwise)")

    real_sleep = time.sleep

    def no_sleep(seconds: float) -> None:
        if seconds > 0.05:
            raise AssertionError(f"a unit test may not sleep ({seconds} s)")
        real_sleep(seconds)

    monkeypatch.setattr(socket.socket, "listen", no_server)
    monkeypatch.setattr(time, "sleep", no_sleep)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for in-process flow runs (never ~/.prefect)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    saved = {name: os.environ.get(name) for name in _AWS_ENV}
    os.environ.update(_AWS_ENV)  # so no real AWS credentials can ever be picked up
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_storage_options(moto_server: str) -> dict[str, Any]:
    """s3fs ``storage_options`` for the moto server."""
    return {
        "key": _AWS_ENV["AWS_ACCESS_KEY_ID"],
        "secret": _AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "client_kwargs": {"endpoint_url": moto_server},
        "use_listings_cache": False,
    }


@pytest.fixture
def s3_bucket(s3_storage_options: dict[str, Any]) -> str:
    """A fresh, empty bucket for this test; returns ``s3://<bucket>``."""
    import fsspec

    fs = fsspec.filesystem("s3", **s3_storage_options)
    name = f"test-{uuid.uuid4().hex[:16]}"
    fs.mkdir(name)
    return f"s3://{name}"
