"""FashnClient corner cases the emulator cannot produce, tested with httpx.MockTransport.

Everything that the emulator can reproduce is tested over real HTTP in
test_client_emulator.py. This file only covers responses a well-behaved FASHN server (and
so the emulator) never sends, or transport failures it cannot inject: HTML 5xx from a
proxy, Retry-After as an HTTP date, unknown error/status names, write timeouts, connect
failures that heal, malformed 200 bodies, and the request headers the client sends to
an output host.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fashn_prefect.api.client import FashnClient
from fashn_prefect.errors import (
    AmbiguousSubmission,
    APIError,
    InternalServerError,
    InvalidResponse,
    OutputUnavailable,
    RateLimitExceeded,
)

pytestmark = pytest.mark.unit

KEY = "fa-mock-secret-KEY-0123456789"
BASE = "https://api.fashn.test"

Step = httpx.Response | type[httpx.RequestError] | Callable[[httpx.Request], httpx.Response]


class Script:
    """A MockTransport handler that plays a list of responses / exceptions in order."""

    def __init__(self, *steps: Step) -> None:
        self.steps: Iterator[Step] = iter(steps)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        step = next(self.steps)
        if isinstance(step, httpx.Response):
            return step
        if isinstance(step, type):
            raise step("simulated failure", request=request)
        return step(request)


def err(status: int, name: str, message: str = "msg", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": name, "message": message}, headers=headers)


def ok_run(pid: str = "pred-1") -> httpx.Response:
    return httpx.Response(200, json={"id": pid, "error": None})


def ok_status(status: str = "completed", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"id": "pred-1", "status": status, "output": ["https://cdn/x.png"], "error": None}
    body.update(extra)
    return httpx.Response(200, json=body, headers=headers)


def make_client(script: Script, **kwargs: Any) -> FashnClient:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.02)
    return FashnClient(
        api_key=KEY,
        base_url=BASE,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(script)),
        **kwargs,
    )


# --------------------------------------------------------------------------- run


async def test_run_5xx_without_documented_body_is_ambiguous_and_not_resent() -> None:
    # A proxy/load balancer 502 page: the emulator always sends the documented body.
    script = Script(httpx.Response(502, text="<html>Bad Gateway</html>"), ok_run())
    client = make_client(script)
    with pytest.raises(AmbiguousSubmission) as info:
        await client.run("background-remove", {"image": "https://x/y.png"})
    assert len(script.requests) == 1
    assert "may exist" in str(info.value) and "not resent" in str(info.value)
    assert info.value.model_name == "background-remove"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.ReadError,
        httpx.WriteError,
        httpx.RemoteProtocolError,
    ],
)
async def test_run_failure_after_sending_is_ambiguous(failure: type[httpx.RequestError]) -> None:
    # WriteTimeout/WriteError/ReadError cannot be injected by the emulator.
    script = Script(failure, ok_run())
    client = make_client(script)
    with pytest.raises(AmbiguousSubmission) as info:
        await client.run("edit", {"image": "https://x/y.png", "prompt": "p"})
    assert len(script.requests) == 1
    assert isinstance(info.value.__cause__, failure)
    assert KEY not in str(info.value)


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_run_retried_when_request_never_left(failure: type[httpx.RequestError]) -> None:
    # A connect failure that heals on the next attempt needs a scripted transport.
    script = Script(failure, failure, ok_run("pred-9"))
    client = make_client(script)
    assert await client.run("edit", {"prompt": "p"}) == "pred-9"
    assert len(script.requests) == 3


async def test_run_connect_failure_exhausted_raises_last_error_without_key() -> None:
    script = Script(*([httpx.ConnectError] * 3))
    client = make_client(script, max_retries=2)
    with pytest.raises(httpx.ConnectError) as info:
        await client.run("edit", {"prompt": "p"})
    assert len(script.requests) == 3
    assert "authorization" not in info.value.request.headers
    assert KEY.encode() not in pickle.dumps(info.value)


async def test_run_unknown_error_name_on_429_is_not_retried() -> None:
    # An undocumented error name: the emulator only emits the seven documented names.
    script = Script(err(429, "SlowDown", "later"), ok_run())
    client = make_client(script)
    with pytest.raises(RateLimitExceeded) as info:
        await client.run("edit", {"prompt": "p"})
    assert info.value.name == "SlowDown"
    assert len(script.requests) == 1


async def test_run_unknown_error_name_on_500_is_ambiguous() -> None:
    script = Script(err(500, "WeirdFailure"), ok_run())
    client = make_client(script)
    with pytest.raises(AmbiguousSubmission):
        await client.run("edit", {"prompt": "p"})
    assert len(script.requests) == 1


async def test_run_documented_503_internal_server_error_is_retried() -> None:
    script = Script(err(503, "InternalServerError", "busy"), ok_run("pred-2"))
    client = make_client(script)
    assert await client.run("edit", {"prompt": "p"}) == "pred-2"
    assert len(script.requests) == 2


async def test_run_400_not_retried() -> None:
    script = Script(err(400, "BadRequest", "Invalid request body"))
    client = make_client(script)
    with pytest.raises(APIError) as info:
        await client.run("edit", {"prompt": "p"})
    assert (info.value.status_code, info.value.name, info.value.message) == (
        400,
        "BadRequest",
        "Invalid request body",
    )


async def test_run_200_with_unreadable_body_is_ambiguous() -> None:
    script = Script(httpx.Response(200, text="<html>oops</html>"))
    client = make_client(script)
    with pytest.raises(AmbiguousSubmission):
        await client.run("edit", {"prompt": "p"})


async def test_run_200_with_error_and_no_id_raises_api_error() -> None:
    script = Script(httpx.Response(200, json={"id": None, "error": "could not start"}))
    client = make_client(script)
    with pytest.raises(APIError) as info:
        await client.run("edit", {"prompt": "p"})
    assert info.value.name == "RunError" and not info.value.retryable


async def test_run_sends_documented_wire_format() -> None:
    script = Script(ok_run())
    client = make_client(script)
    await client.run("edit", {"prompt": "p"}, webhook_url="https://hook.test/x?a=1")
    request = script.requests[0]
    assert request.method == "POST" and request.url.path == "/v1/run"
    assert request.url.params["webhook_url"] == "https://hook.test/x?a=1"
    assert json.loads(request.content) == {"model_name": "edit", "inputs": {"prompt": "p"}}
    assert request.headers["authorization"] == f"Bearer {KEY}"


# --------------------------------------------------------------------------- status


async def test_status_retry_after_http_date_is_honoured() -> None:
    # The emulator sends Retry-After as delta seconds only.
    when = email.utils.formatdate(time.time() + 1.5, usegmt=True)
    script = Script(err(503, "InternalServerError", **{"Retry-After": when}), ok_status())
    client = make_client(script)
    result = await client.status("pred-1")
    assert result.is_completed
    waited = script.times[1] - script.times[0]
    # HTTP dates have 1 s resolution: the wait is at least what remains of the date.
    assert waited >= 0.4


async def test_status_retry_after_ms_is_honoured() -> None:
    script = Script(err(429, "RateLimitExceeded", **{"retry-after-ms": "300"}), ok_status())
    client = make_client(script)
    await client.status("pred-1")
    assert script.times[1] - script.times[0] >= 0.3


async def test_status_5xx_without_body_is_retried() -> None:
    script = Script(httpx.Response(502, text="bad gateway"), ok_status())
    client = make_client(script)
    assert (await client.status("pred-1")).is_completed
    assert len(script.requests) == 2


async def test_status_exhausted_retries_raise_last_error() -> None:
    script = Script(*(httpx.Response(502, text="bad gateway") for _ in range(3)))
    client = make_client(script, max_retries=2)
    with pytest.raises(InternalServerError) as info:
        await client.status("pred-1")
    assert info.value.status_code == 502
    assert len(script.requests) == 3


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError])
async def test_status_transport_errors_retried(failure: type[httpx.RequestError]) -> None:
    script = Script(failure, ok_status())
    client = make_client(script)
    assert (await client.status("pred-1")).is_completed


async def test_status_lenient_parsing() -> None:
    # Unknown status strings, unknown error names and a missing "output" key are legal for
    # the client but never produced by the emulator.
    script = Script(
        httpx.Response(
            200,
            json={
                "id": "pred-1",
                "status": "exploded",
                "error": {"name": "NewError", "message": "m"},
            },
            headers={"x-fashn-credits-used": "0"},
        ),
        httpx.Response(200, json={"id": "pred-1", "status": "processing"}),
    )
    client = make_client(script)
    first = await client.status("pred-1")
    assert first.status == "exploded" and first.is_terminal and not first.is_completed
    assert first.error is not None and first.error.name == "NewError"
    assert first.output is None and first.credits_used == 0
    second = await client.status("pred-1")
    assert not second.is_terminal and second.output is None and second.credits_used is None


@pytest.mark.parametrize(
    ("output", "kept", "problem"),
    [
        (["https://cdn/a.png", "data:image/png;base64,AA=="], 2, None),
        ({"images": ["https://cdn/a.png"]}, 1, None),
        ("https://cdn/a.png", 1, None),
        ({"urls": ["https://cdn/a.png"]}, None, "no 'images' list"),
        (["https://cdn/a.png", {"url": "https://cdn/b.png"}], 1, "1 of 2 output items"),
        (42, None, "a int where a list"),
    ],
)
async def test_status_output_forms(
    output: Any, kept: int | None, problem: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    # The documented forms are kept; anything else is flagged (and logged as an error),
    # never silently dropped. The emulator produces only the documented forms.
    client = make_client(Script(ok_status(output=output)))
    with caplog.at_level(logging.ERROR, logger="fashn_prefect.api.client"):
        status = await client.status("pred-1")
    assert (len(status.output) if status.output is not None else None) == kept
    if problem is None:
        assert status.output_problem is None and not caplog.records
    else:
        assert status.output_problem is not None and problem in status.output_problem
        assert "OutputMissing" in caplog.text


async def test_status_credits_header_ignored_on_non_terminal() -> None:
    script = Script(ok_status("in_queue", headers={"x-fashn-credits-used": "4"}, output=None))
    client = make_client(script)
    assert (await client.status("pred-1")).credits_used is None


async def test_status_id_is_path_escaped() -> None:
    script = Script(ok_status())
    client = make_client(script)
    await client.status("../credits")
    assert script.requests[0].url.raw_path == b"/v1/status/..%2Fcredits"


async def test_status_200_without_status_field() -> None:
    script = Script(httpx.Response(200, json={"hello": "world"}))
    client = make_client(script)
    with pytest.raises(InvalidResponse):
        await client.status("pred-1")


# --------------------------------------------------------------------------- fetch


async def test_fetch_output_never_sends_the_key() -> None:
    # The emulator cannot report the headers a request carried.
    script = Script(httpx.Response(200, content=b"PNG", headers={"content-type": "image/png"}))
    client = make_client(script)
    got = await client.fetch_output("https://cdn.fashn.test/pred-1/output_0.png")
    assert got.data == b"PNG" and got.extension == "png"
    sent = script.requests[0]
    assert "authorization" not in sent.headers
    assert all(KEY not in value for value in sent.headers.values())


async def test_fetch_output_follows_redirect_without_key() -> None:
    script = Script(
        httpx.Response(302, headers={"location": "https://edge.test/o.jpg"}),
        httpx.Response(200, content=b"JPG"),
    )
    client = make_client(script)
    got = await client.fetch_output("https://cdn.fashn.test/o.jpg")
    assert got.content_type == "image/jpeg" and got.extension == "jpg"
    assert all("authorization" not in r.headers for r in script.requests)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n" + b"\0" * 8


@pytest.mark.parametrize(
    ("content", "url", "header", "expected"),
    [
        (PNG_MAGIC, "https://cdn.fashn.test/o.jpg", "binary/octet-stream", "png"),  # bytes win
        (b"\xff\xd8\xff\xe0", "https://cdn.fashn.test/o", "image/png", "jpg"),
        (b"????", "https://cdn.fashn.test/o.jpg", "image/png", "jpg"),  # then the suffix
        (b"????", "https://cdn.fashn.test/o", "image/webp", "webp"),  # then the header
        (b"????", "https://cdn.fashn.test/o", "binary/octet-stream", "bin"),
    ],
)
async def test_fetch_output_file_type_order(
    content: bytes, url: str, header: str, expected: str
) -> None:
    # A real CDN may send a generic or wrong Content-Type; the emulator's CDN only sends
    # the right one or (with octet_stream_cdn) application/octet-stream.
    client = make_client(
        Script(httpx.Response(200, content=content, headers={"content-type": header}))
    )
    assert (await client.fetch_output(url)).extension == expected


async def test_data_uri_file_type_follows_the_bytes() -> None:
    client = make_client(Script())
    ref = "data:image/jpeg;base64," + base64.b64encode(PNG_MAGIC).decode()
    assert (await client.fetch_output(ref)).extension == "png"


@pytest.mark.parametrize("code", [403, 410])
async def test_fetch_output_gone_codes(code: int) -> None:
    # 403/410 are what real CDNs answer for deleted objects; the emulator answers 404.
    script = Script(httpx.Response(code))
    client = make_client(script)
    with pytest.raises(OutputUnavailable):
        await client.fetch_output("https://cdn.fashn.test/o.png")
    assert len(script.requests) == 1


async def test_fetch_output_5xx_retried() -> None:
    script = Script(httpx.Response(503), httpx.ReadTimeout, httpx.Response(200, content=b"x"))
    client = make_client(script)
    assert (await client.fetch_output("https://cdn.fashn.test/o.mp4")).content_type == "video/mp4"
    assert len(script.requests) == 3


async def test_fetch_output_rejects_other_schemes() -> None:
    client = make_client(Script())
    with pytest.raises(ValueError):
        await client.fetch_output("file:///etc/passwd")


# --------------------------------------------------------------------------- wait / credits


async def test_wait_polls_until_terminal() -> None:
    script = Script(
        ok_status("starting", output=None),
        ok_status("processing", output=None),
        ok_status("completed", headers={"x-fashn-credits-used": "2"}),
    )
    client = make_client(script)
    result = await client.wait("pred-1", poll_interval=0.01, timeout=5)
    assert result.is_completed and result.credits_used == 2


async def test_wait_timeout() -> None:
    script = Script(*(ok_status("processing", output=None) for _ in range(100)))
    client = make_client(script)
    with pytest.raises(TimeoutError, match=r"still 'processing' after 0\.1 s"):
        await client.wait("pred-1", poll_interval=0.02, timeout=0.1)
    # The deadline is absolute: polls stop once it passes (every sleep lasts at least
    # the poll interval, except the last one, which ends at the deadline).
    assert 2 <= len(script.requests) <= 0.1 / 0.02 + 2


async def test_credits_bad_body() -> None:
    client = make_client(Script(httpx.Response(200, json={"credits": {"total": "x"}})))
    with pytest.raises(InvalidResponse):
        await client.credits()


async def test_server_echoing_key_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    # A server that echoes the key in its error message (never done by the emulator).
    caplog.set_level(logging.DEBUG)
    client = make_client(Script(err(401, "UnauthorizedAccess", f"bad key {KEY}")))
    with pytest.raises(APIError) as info:
        await client.credits()
    assert KEY not in str(info.value) and KEY not in info.value.message
    assert KEY not in caplog.text
