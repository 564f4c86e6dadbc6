"""The local webhook receiver: the token, the body limit, malformed JSON, unknown ids,
duplicates, and a delivery that arrives before the ``POST /v1/run`` answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from fashn_prefect.settings import FashnSettings
from fashn_prefect.webhooks.receiver import (
    MAX_BODY,
    Receiver,
    callback_url,
    close_receiver,
    open_receiver,
    parse_listen,
)
from fashn_prefect.webhooks.registry import Deliveries
from fashn_prefect.webhooks.token import derived_token, process_token, token_matches

TOKEN = "t0ken-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver("127.0.0.1", 0, TOKEN).start()
    yield started
    started.stop()


def post(url: str, **kwargs: object) -> httpx.Response:
    return httpx.post(url, trust_env=False, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_the_right_token_wakes_the_waiter(receiver: Receiver) -> None:
    async def scenario() -> float | None:
        with receiver.deliveries.waiting("p-1") as waiter:
            response = await asyncio.to_thread(
                post, receiver.url, json={"id": "p-1", "status": "completed"}
            )
            assert response.status_code == 200 and response.json()["known"] is True
            return await waiter.wait(time.monotonic() + 30)

    assert asyncio.run(scenario()) is not None


@pytest.mark.parametrize("token", ["", "wrong", TOKEN + "x", "ünïcode"])
def test_a_wrong_or_missing_token_gets_403_and_does_nothing(receiver: Receiver, token: str) -> None:
    url = callback_url(receiver.base_url, token) if token else receiver.base_url + "/fashn-webhook"
    with receiver.deliveries.waiting("p-2") as waiter:
        response = post(url, json={"id": "p-2", "status": "completed"})
        assert response.status_code == 403
        assert waiter.take() is None
    assert receiver.deliveries.received == 0


def test_a_body_over_1_mb_gets_413(receiver: Receiver) -> None:
    big = b'{"id": "p-3", "pad": "' + b"x" * MAX_BODY + b'"}'
    with receiver.deliveries.waiting("p-3") as waiter:
        assert post(receiver.url, content=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: streamed and counted
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        assert post(receiver.url, content=chunks()).status_code == 413
        assert waiter.take() is None


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"status": "completed"}', b'""'])
def test_malformed_json_or_no_id_gets_400(receiver: Receiver, body: bytes) -> None:
    assert post(receiver.url, content=body).status_code == 400
    assert receiver.deliveries.received == 0


def test_an_unknown_id_gets_200_and_is_held_briefly_then_dropped(receiver: Receiver) -> None:
    response = post(receiver.url, json={"id": "nobody", "status": "completed"})
    assert response.status_code == 200 and response.json()["known"] is False
    assert receiver.deliveries.held == 1
    receiver.deliveries.hold_seconds = 0.0
    with receiver.deliveries.waiting("someone-else"):
        pass
    assert receiver.deliveries.held == 0


def test_a_delivery_before_the_id_is_known_is_held_for_its_waiter() -> None:
    deliveries = Deliveries()
    assert deliveries.deliver("early") is False

    async def scenario() -> float | None:
        with deliveries.waiting("early") as waiter:
            return await waiter.wait(time.monotonic() + 30)

    assert asyncio.run(scenario()) is not None
    assert deliveries.held == 0


def test_duplicate_deliveries_wake_once() -> None:
    deliveries = Deliveries()

    async def scenario() -> list[float | None]:
        woken = []
        with deliveries.waiting("dup") as waiter:
            deliveries.deliver("dup")  # before the wait
            deliveries.deliver("dup")
            woken.append(await waiter.wait(time.monotonic() + 30))
            woken.append(await waiter.wait(time.monotonic()))

            async def twice() -> None:  # while it waits
                await asyncio.sleep(0.01)
                deliveries.deliver("dup")
                deliveries.deliver("dup")

            first, _ = await asyncio.gather(waiter.wait(time.monotonic() + 30), twice())
            woken += [first, await waiter.wait(time.monotonic())]
        return woken

    first, second, third, fourth = asyncio.run(scenario())
    assert first is not None and second is None
    assert third is not None and fourth is None


def test_one_receiver_per_process_account_and_address() -> None:
    a = open_receiver("acct", "127.0.0.1:0")
    b = open_receiver("acct", "127.0.0.1:0")
    try:
        assert a is b and a.port != 0
        assert a.url.endswith(process_token())
    finally:
        close_receiver("acct", "127.0.0.1:0")
    assert post(a.url, json={"id": "x"}).status_code == 200  # the second user keeps it up
    close_receiver("acct", "127.0.0.1:0")
    with pytest.raises(httpx.ConnectError):
        post(a.url, json={"id": "x"})


def test_tokens_and_settings() -> None:
    assert token_matches(TOKEN, TOKEN) and not token_matches(None, TOKEN)
    assert derived_token("s", "acct") == derived_token("s", "acct") != derived_token("s", "b")
    assert parse_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError):
        parse_listen("localhost")
    assert FashnSettings(webhook_listen="127.0.0.1:0").webhook_listen == "127.0.0.1:0"
    for bad in (
        {"webhook_listen": "nope"},
        {"webhook_url": "ftp://x"},
        {"webhook_url": "http://h/?a=1"},
    ):
        with pytest.raises(ValueError):
            FashnSettings(**bad)
    url = Receiver("0.0.0.0", 8080, TOKEN, "https://hooks.example.com/base/").url
    assert url == f"https://hooks.example.com/base?token={TOKEN}"
    assert (
        callback_url("http://127.0.0.1:8/", TOKEN)
        == f"http://127.0.0.1:8/fashn-webhook?token={TOKEN}"
    )
