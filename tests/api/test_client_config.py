"""FashnClient configuration and the pure retry/output helpers (no HTTP involved)."""

from __future__ import annotations

import base64
import email.utils

import httpx
import pytest

from fashn_prefect.api.client import FashnClient
from fashn_prefect.api.outputs import decode_data_uri, is_expired_base64
from fashn_prefect.api.responses import FetchedOutput
from fashn_prefect.api.retry import backoff_delay, parse_retry_after, retry_delay
from fashn_prefect.environment import DEFAULT_BASE_URL
from fashn_prefect.errors import ConfigurationError, OutputUnavailable

pytestmark = pytest.mark.unit

KEY = "fa-config-secret-KEY-42"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASHN_API_KEY", raising=False)
    monkeypatch.delenv("FASHN_BASE_URL", raising=False)


def test_missing_key_message_names_env_var_and_argument() -> None:
    with pytest.raises(ConfigurationError) as info:
        FashnClient()
    assert "FASHN_API_KEY" in str(info.value) and "api_key" in str(info.value)


def test_blank_key_is_missing() -> None:
    with pytest.raises(ConfigurationError):
        FashnClient(api_key="   ")


def test_env_fallbacks_and_explicit_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASHN_API_KEY", KEY)
    client = FashnClient()
    assert client.base_url == DEFAULT_BASE_URL
    monkeypatch.setenv("FASHN_BASE_URL", "https://proxy.example.com/fashn/")
    assert FashnClient().base_url == "https://proxy.example.com/fashn"
    assert FashnClient(base_url="https://other.example.com").base_url == "https://other.example.com"


@pytest.mark.parametrize(
    "url",
    ["http://api.fashn.ai", "http://10.0.0.1:8000", "http://127.evil.com", "ftp://api.fashn.ai"],
)
def test_insecure_base_url_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        FashnClient(api_key=KEY, base_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.5.6.7", "http://localhost:1", "http://[::1]:9"]
)
def test_plain_http_allowed_to_loopback(url: str) -> None:
    assert FashnClient(api_key=KEY, base_url=url).base_url == url


def test_insecure_base_url_allowed_when_asked() -> None:
    client = FashnClient(
        api_key=KEY, base_url="http://fashn.internal", allow_insecure_base_url=True
    )
    assert client.base_url == "http://fashn.internal"


def test_base_url_with_credentials_refused() -> None:
    with pytest.raises(ConfigurationError):
        FashnClient(api_key=KEY, base_url="https://user:pw@api.fashn.ai")


def test_repr_and_errors_hide_key() -> None:
    client = FashnClient(api_key=KEY)
    assert KEY not in repr(client) and "api.fashn.ai" in repr(client)
    with pytest.raises(ConfigurationError) as info:
        FashnClient(api_key=KEY, base_url="http://api.fashn.ai")
    assert KEY not in str(info.value)


def test_invalid_retry_settings() -> None:
    with pytest.raises(ValueError):
        FashnClient(api_key=KEY, max_retries=-1)


async def test_empty_prediction_id_rejected() -> None:
    client = FashnClient(api_key=KEY)
    with pytest.raises(ValueError):
        await client.status("")
    await client.aclose()


async def test_data_uri_and_expired_marker() -> None:
    client = FashnClient(api_key=KEY)
    payload = base64.b64encode(b"\x89PNG...").decode()
    got = await client.fetch_output(f"data:image/png;base64,{payload}")
    assert got == FetchedOutput(b"\x89PNG...", "image/png") and got.extension == "png"
    for expired in ("<base64>_expired", "data:image/png;base64,<base64>_expired"):
        with pytest.raises(OutputUnavailable):
            await client.fetch_output(expired)
    await client.aclose()


def test_decode_data_uri_errors() -> None:
    with pytest.raises(ValueError):
        decode_data_uri("data:image/png;base64,@@@")
    with pytest.raises(ValueError):
        decode_data_uri("data:image/png;base64")
    assert decode_data_uri("data:,hi%20there") == (b"hi there", "text/plain")
    assert not is_expired_base64("data:image/png;base64,AAAA")


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    # 0, negative and past dates ask for nothing: the client backs off normally (as the SDK).
    assert parse_retry_after({"Retry-After": "-4"}) is None
    assert parse_retry_after({"Retry-After": "0"}) is None
    assert parse_retry_after({"retry-after-ms": "0"}) is None
    past = email.utils.formatdate(999_990.0, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=lambda: 1_000_000.0) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    date = email.utils.formatdate(1_000_010.0, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=lambda: 1_000_000.0) == 10.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0


def test_delays() -> None:
    assert 0.5 <= backoff_delay(0, 1.0, 8.0) <= 1.0
    assert 4.0 <= backoff_delay(10, 1.0, 8.0) <= 8.0
    assert backoff_delay(10_000, 0.5, 8.0) <= 8.0
    assert retry_delay(0, 2.5, 0.01, 0.02) == 2.5
    assert retry_delay(0, 3600, 0.01, 0.02) == 60.0
    # Retry-After is a minimum: a longer back-off is not shortened to it.
    assert 2.0 <= retry_delay(3, 0.5, 1.0, 4.0) <= 4.0
    # Without one, the wait reaches the next limit window, plus jittered back-off.
    assert 60.005 <= retry_delay(0, None, 0.01, 0.02, window=60.0) <= 60.01
    assert 0.005 <= retry_delay(0, None, 0.01, 0.02) <= 0.01
