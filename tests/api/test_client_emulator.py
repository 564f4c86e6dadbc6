"""FashnClient over real HTTP against the FASHN emulator (fixtures from the emulator plugin)."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import logging
import pickle
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from _helpers import png_data_uri
from PIL import Image

from fashn_prefect.api.client import FashnClient
from fashn_prefect.errors import (
    AmbiguousSubmission,
    InternalServerError,
    NotFound,
    OutOfCredits,
    OutputUnavailable,
    UnauthorizedAccess,
)

KEY = "fa-emulator-test-SECRET-key-7f3a9"
WRONG_KEY = "fa-wrong-SECRET-key-0000"
KEY_ID = "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5.0}


IMAGE = png_data_uri((200, 30, 30), (64, 96))


@pytest.fixture
def emulator(fashn_emulator_factory: Callable[..., Any]) -> Any:
    return fashn_emulator_factory(api_keys=(KEY,), time_scale=0.01)


@pytest.fixture
async def client(emulator: Any) -> AsyncIterator[FashnClient]:
    async with FashnClient(api_key=KEY, base_url=emulator.url, **FAST) as fashn:
        yield fashn


class OnFirstRetry(logging.Handler):
    """Runs an action when the client logs its first retry (e.g. to switch a fault off)."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.action = action
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retry" in record.getMessage():
            self.retries += 1
            if self.retries == 1:
                self.action()


Installer = Callable[[Callable[[], None]], OnFirstRetry]


@pytest.fixture
def on_first_retry() -> Iterator[Installer]:
    client_logger = logging.getLogger("fashn_prefect.api.client")
    handlers: list[OnFirstRetry] = []

    def install(action: Callable[[], None]) -> OnFirstRetry:
        handler = OnFirstRetry(action)
        client_logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield install
    for handler in handlers:
        client_logger.removeHandler(handler)


def run_requests(stats: dict[str, Any]) -> int:
    return int(stats["requests"].get(KEY_ID, {}).get("run", 0))


def status_requests(stats: dict[str, Any]) -> int:
    return int(stats["requests"].get(KEY_ID, {}).get("status", 0))


# --------------------------------------------------------------------------- happy path


async def test_run_status_credits_and_fetch(emulator: Any, client: FashnClient) -> None:
    before = await client.credits()
    assert before.total == before.subscription + before.on_demand > 0

    prediction_id = await client.run("background-remove", {"image": IMAGE})
    assert prediction_id
    first = await client.status(prediction_id)
    assert first.id == prediction_id and first.status in {
        "starting",
        "in_queue",
        "processing",
        "completed",
    }

    done = await client.wait(prediction_id, poll_interval=0.01, timeout=20)
    assert done.is_completed and done.error is None
    assert done.output is not None and len(done.output) == 1
    assert done.credits_used == 1

    after = await client.credits()
    assert after.total == before.total - 1

    fetched = await client.fetch_output(done.output[0])
    assert fetched.content_type == "image/png" and fetched.extension == "png"
    Image.open(io.BytesIO(fetched.data)).load()

    stats = emulator.stats()
    assert [p["id"] for p in stats["predictions"]] == [prediction_id]


async def test_webhook_url_sent_as_query_parameter(emulator: Any, client: FashnClient) -> None:
    hook = f"{emulator.url}/files/hook?token=abc"
    prediction_id = await client.run("background-remove", {"image": IMAGE}, webhook_url=hook)
    (prediction,) = emulator.stats()["predictions"]
    assert prediction["id"] == prediction_id
    assert prediction["webhook"]["url"] == hook


async def test_input_image_from_url(emulator: Any, client: FashnClient) -> None:
    raw = base64.b64decode(IMAGE.split(",", 1)[1])
    url = emulator.put_file("person.png", raw, "image/png")
    prediction_id = await client.run("background-remove", {"image": url})
    assert (await client.wait(prediction_id, poll_interval=0.01, timeout=20)).is_completed


async def test_failed_prediction_is_a_status_not_an_exception(client: FashnClient) -> None:
    prediction_id = await client.run(
        "edit", {"image": IMAGE, "prompt": "emulator-fail:PipelineError"}
    )
    done = await client.wait(prediction_id, poll_interval=0.01, timeout=20)
    assert done.status == "failed" and not done.is_completed
    assert done.error is not None and done.error.name == "PipelineError"


# --------------------------------------------------------------------------- API errors


async def test_wrong_key_is_unauthorized_and_not_retried(emulator: Any) -> None:
    async with FashnClient(api_key=WRONG_KEY, base_url=emulator.url, **FAST) as fashn:
        with pytest.raises(UnauthorizedAccess) as info:
            await fashn.credits()
    assert info.value.status_code == 401 and info.value.name == "UnauthorizedAccess"
    assert emulator.stats()["rejected"]["UnauthorizedAccess"] == 1


async def test_unknown_prediction_is_not_found(emulator: Any, client: FashnClient) -> None:
    with pytest.raises(NotFound):
        await client.status("no-such-prediction")
    assert status_requests(emulator.stats()) == 1


async def test_out_of_credits_is_not_retried(fashn_emulator_factory: Callable[..., Any]) -> None:
    emulator = fashn_emulator_factory(
        api_keys=(KEY,), time_scale=0.01, subscription_credits=0, on_demand_credits=0
    )
    async with FashnClient(api_key=KEY, base_url=emulator.url, **FAST) as fashn:
        with pytest.raises(OutOfCredits) as info:
            await fashn.run("background-remove", {"image": IMAGE})
    assert info.value.status_code == 429 and not info.value.retryable
    stats = emulator.stats()
    assert run_requests(stats) == 1
    assert stats["rejected"]["OutOfCredits"] == 1
    assert stats["predictions"] == []


# --------------------------------------------------------------------------- retries


async def test_status_5xx_is_retried(
    emulator: Any, client: FashnClient, on_first_retry: Installer
) -> None:
    prediction_id = await client.run("background-remove", {"image": IMAGE})
    emulator.set_faults(status_5xx=1.0)
    hook = on_first_retry(lambda: emulator.set_faults(status_5xx=0.0))
    result = await client.status(prediction_id)
    assert result.id == prediction_id
    assert hook.retries == 1
    stats = emulator.stats()
    assert stats["faults_injected"]["status_5xx"] == 1
    assert status_requests(stats) == 2


async def test_status_5xx_exhausts_retries(emulator: Any) -> None:
    emulator.set_faults(status_5xx=1.0)
    async with FashnClient(api_key=KEY, base_url=emulator.url, max_retries=2, **FAST) as fashn:
        with pytest.raises(InternalServerError) as info:
            await fashn.status("whatever")
    assert info.value.status_code == 500
    assert status_requests(emulator.stats()) == 3


async def test_run_documented_500_is_retried_once_created(
    emulator: Any, client: FashnClient, on_first_retry: Installer
) -> None:
    emulator.set_faults(run_5xx=1.0)
    on_first_retry(lambda: emulator.set_faults(run_5xx=0.0))
    prediction_id = await client.run("background-remove", {"image": IMAGE})
    stats = emulator.stats()
    assert stats["faults_injected"]["run_5xx"] == 1
    assert run_requests(stats) == 2
    assert [p["id"] for p in stats["predictions"]] == [prediction_id]


async def test_run_dropped_connection_is_ambiguous_and_never_resent(
    emulator: Any, client: FashnClient
) -> None:
    emulator.set_faults(drop_connection=1.0)
    with pytest.raises(AmbiguousSubmission) as info:
        await client.run("background-remove", {"image": IMAGE})
    assert "may exist" in str(info.value) and "not resent" in str(info.value)
    stats = emulator.stats()
    assert stats["faults_injected"]["drop_connection"] == 1
    assert run_requests(stats) == 1
    assert len(stats["predictions"]) == 1


async def test_run_slower_than_read_timeout_is_ambiguous(emulator: Any) -> None:
    emulator.set_faults(slow_response=1.0, slow_seconds=1.0)
    async with FashnClient(
        api_key=KEY, base_url=emulator.url, timeout=httpx.Timeout(0.2), backoff_base=0.01
    ) as fashn:
        with pytest.raises(AmbiguousSubmission) as info:
            await fashn.run("background-remove", {"image": IMAGE})
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    stats = emulator.stats()
    assert run_requests(stats) == 1
    assert len(stats["predictions"]) == 1


async def test_status_dropped_connection_is_retried(
    emulator: Any, client: FashnClient, on_first_retry: Installer
) -> None:
    prediction_id = await client.run("background-remove", {"image": IMAGE})
    emulator.set_faults(drop_connection=1.0)
    on_first_retry(lambda: emulator.set_faults(drop_connection=0.0))
    assert (await client.status(prediction_id)).id == prediction_id
    assert status_requests(emulator.stats()) == 2


@pytest.mark.parametrize("operation", ["run", "status"])
async def test_rate_limit_burst_honours_retry_after(emulator: Any, operation: str) -> None:
    seen: list[tuple[str, float, httpx.Response | None]] = []

    async def on_request(request: httpx.Request) -> None:
        seen.append(("request", time.monotonic(), None))

    async def on_response(response: httpx.Response) -> None:
        seen.append(("response", time.monotonic(), response))

    http = httpx.AsyncClient(event_hooks={"request": [on_request], "response": [on_response]})
    async with FashnClient(api_key=KEY, base_url=emulator.url, http_client=http, **FAST) as fashn:
        emulator.set_faults(rate_limit_burst=2)
        if operation == "run":
            await fashn.run("background-remove", {"image": IMAGE})
        else:
            with pytest.raises(NotFound):  # reached the API after two 429s
                await fashn.status("unknown-id")
    await http.aclose()

    responses = [(t, r) for kind, t, r in seen if kind == "response" and r is not None]
    requests = [t for kind, t, _ in seen if kind == "request"]
    assert [r.status_code for _, r in responses][:2] == [429, 429]
    assert len(requests) == 3
    for index in range(2):
        retry_after = float(responses[index][1].headers["retry-after"])
        assert requests[index + 1] - responses[index][0] >= retry_after * 0.95
    stats = emulator.stats()
    assert stats["rejected"]["RateLimitExceeded"] == 2
    if operation == "run":
        assert len(stats["predictions"]) == 1


@pytest.mark.parametrize("variant", ["omit_retry_after", "zero_retry_after"])
@pytest.mark.parametrize("operation", ["run", "status"])
async def test_429_without_usable_retry_after_waits_for_the_next_window(
    emulator: Any, operation: str, variant: str
) -> None:
    # Without Retry-After (or with Retry-After: 0) a direct FashnClient user must not spend
    # its retries in a few milliseconds: each retry waits out the endpoint's limit window.
    window = 0.3
    sent: list[float] = []

    async def on_request(request: httpx.Request) -> None:
        sent.append(time.monotonic())

    http = httpx.AsyncClient(event_hooks={"request": [on_request]})
    windows = {"run": window, "status": window}
    async with FashnClient(
        api_key=KEY, base_url=emulator.url, http_client=http, limit_windows=windows, **FAST
    ) as fashn:
        emulator.set_faults(rate_limit_burst=3, **{variant: True})
        if operation == "run":
            await fashn.run("background-remove", {"image": IMAGE})
        else:
            with pytest.raises(NotFound):  # reached the API after three 429s
                await fashn.status("unknown-id")
    await http.aclose()
    assert len(sent) == 4
    assert all(later - earlier >= window for earlier, later in itertools.pairwise(sent))
    assert emulator.stats()["rejected"]["RateLimitExceeded"] == 3


# --------------------------------------------------------------------------- outputs


async def test_base64_output_and_expiry(emulator: Any, client: FashnClient) -> None:
    prediction_id = await client.run("background-remove", {"image": IMAGE, "return_base64": True})
    done = await client.wait(prediction_id, poll_interval=0.01, timeout=20)
    assert done.output is not None and done.output[0].startswith("data:image/png;base64,")
    fetched = await client.fetch_output(done.output[0])
    assert fetched.content_type == "image/png"
    Image.open(io.BytesIO(fetched.data)).load()

    emulator.advance_clock(3601)
    later = await client.status(prediction_id)
    assert later.output is not None
    with pytest.raises(OutputUnavailable):
        await client.fetch_output(later.output[0])


async def test_cdn_output_expiry_and_gone(emulator: Any, client: FashnClient) -> None:
    prediction_id = await client.run("background-remove", {"image": IMAGE})
    done = await client.wait(prediction_id, poll_interval=0.01, timeout=20)
    assert done.output is not None
    emulator.advance_clock(72 * 3600 + 1)
    with pytest.raises(OutputUnavailable):
        await client.fetch_output(done.output[0])

    emulator.reset()
    emulator.set_faults(cdn_gone=1.0)
    prediction_id = await client.run("background-remove", {"image": IMAGE})
    done = await client.wait(prediction_id, poll_interval=0.01, timeout=20)
    assert done.output is not None
    with pytest.raises(OutputUnavailable):
        await client.fetch_output(done.output[0])


# --------------------------------------------------------------------------- configuration / secrets


async def test_env_var_fallbacks(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASHN_API_KEY", KEY)
    monkeypatch.setenv("FASHN_BASE_URL", emulator.url)
    async with FashnClient(**FAST) as fashn:
        assert fashn.base_url == emulator.url
        assert (await fashn.credits()).total > 0
    async with FashnClient(api_key=WRONG_KEY, **FAST) as fashn:
        with pytest.raises(UnauthorizedAccess):
            await fashn.credits()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_key_never_logged_or_in_errors(
    emulator: Any, caplog: pytest.LogCaptureFixture, on_first_retry: Installer
) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    async with FashnClient(api_key=KEY, base_url=emulator.url, **FAST) as fashn:
        assert KEY not in repr(fashn)
        emulator.set_faults(rate_limit_burst=1)
        prediction_id = await fashn.run("background-remove", {"image": IMAGE})
        await fashn.wait(prediction_id, poll_interval=0.01, timeout=20)
        emulator.set_faults(drop_connection=1.0)
        try:
            await fashn.run("background-remove", {"image": IMAGE})
        except AmbiguousSubmission as exc:
            failures.append(exc)
        emulator.set_faults(drop_connection=0.0, status_5xx=1.0)
        try:
            await fashn.status(prediction_id)
        except InternalServerError as exc:
            failures.append(exc)
    async with FashnClient(api_key=WRONG_KEY, base_url=emulator.url, **FAST) as fashn:
        try:
            await fashn.credits()
        except UnauthorizedAccess as exc:
            failures.append(exc)
    dead = f"http://127.0.0.1:{closed_port()}"
    async with FashnClient(api_key=KEY, base_url=dead, max_retries=1, **FAST) as fashn:
        try:
            await fashn.credits()
        except httpx.ConnectError as exc:
            failures.append(exc)
            assert "authorization" not in exc.request.headers

    assert len(failures) == 4
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert any(
        r.levelno == logging.DEBUG and r.name == "fashn_prefect.api.client" for r in caplog.records
    )
    for secret in (KEY, WRONG_KEY):
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in (record.exc_text or "")
        for failure in failures:
            assert secret not in str(failure) and secret not in repr(failure)
            assert secret.encode() not in pickle.dumps(failure)
            cause = failure.__cause__
            if cause is not None:
                assert secret not in str(cause)
                assert secret.encode() not in pickle.dumps(cause)


async def test_rate_limit_window_waits_for_retry_after(
    fashn_emulator_factory: Callable[..., Any],
) -> None:
    # 2 credits requests per 200 emulated s = 2 real s: the third call must wait for a slot.
    # No threshold on how long anything took: the client's next request must come at least
    # Retry-After after the 429 (a sleep never ends early), and then be accepted.
    emulator = fashn_emulator_factory(api_keys=(KEY,), time_scale=0.01, credits_limit=(2, 200.0))
    events: list[tuple[str, float, float | None]] = []

    async def on_request(request: httpx.Request) -> None:
        events.append(("request", time.monotonic(), None))

    async def on_response(response: httpx.Response) -> None:
        retry_after = response.headers.get("retry-after") if response.status_code == 429 else None
        events.append(("429" if retry_after else "ok", time.monotonic(), float(retry_after or 0)))

    http = httpx.AsyncClient(event_hooks={"request": [on_request], "response": [on_response]})
    async with FashnClient(api_key=KEY, base_url=emulator.url, http_client=http, **FAST) as fashn:
        for _ in range(3):
            assert (await fashn.credits()).total > 0
    await http.aclose()
    kinds = [kind for kind, _, _ in events]
    assert kinds == ["request", "ok", "request", "ok", "request", "429", "request", "ok"]
    _, rejected_at, retry_after = events[5]
    assert retry_after is not None and retry_after > 0
    assert events[6][1] - rejected_at >= retry_after - 0.002  # honoured, then accepted
    assert emulator.stats()["rejected"]["RateLimitExceeded"] == 1
