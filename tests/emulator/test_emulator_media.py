"""Inputs really loaded and outputs really produced by the emulator; CDN and base64 expiry."""

from __future__ import annotations

import base64
import io
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _helpers import api_client
from PIL import Image

from fashn_prefect.emulator import EmulatorServer


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (60, 90)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), color), (size[0] // 4, size[1] // 4))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(color: tuple[int, int, int], size: tuple[int, int] = (60, 90)) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(color, size)).decode()


RED = data_uri((220, 0, 0))
BLUE = data_uri((0, 0, 220))


def run(client: httpx.Client, model: str, inputs: dict[str, Any]) -> httpx.Response:
    response = client.post("/v1/run", json={"model_name": model, "inputs": inputs})
    assert response.status_code == 200, response.text
    pid = response.json()["id"]
    deadline = time.monotonic() + 10
    while True:
        status = client.get(f"/v1/status/{pid}")
        if status.json()["status"] in ("completed", "failed"):
            return status
        assert time.monotonic() < deadline
        time.sleep(0.005)


def fetch(client: httpx.Client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200
    return response.content


@pytest.fixture
def server(fashn_emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    return fashn_emulator_factory(time_scale=0.01, max_in_flight=50)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_outputs_depend_on_inputs(server: EmulatorServer) -> None:
    red_url = server.put_file("people/red.png", png_bytes((220, 0, 0)), "image/png")
    with api_client(server) as client:
        a = run(client, "tryon-v1.6", {"model_image": red_url, "garment_image": BLUE})
        b = run(client, "tryon-v1.6", {"model_image": BLUE, "garment_image": RED})
        a2 = run(client, "tryon-v1.6", {"model_image": red_url, "garment_image": BLUE})
        out_a = fetch(client, a.json()["output"][0])
        out_b = fetch(client, b.json()["output"][0])
        out_a2 = fetch(client, a2.json()["output"][0])
    assert out_a != out_b
    assert out_a == out_a2  # same inputs, same seed -> same output
    image = Image.open(io.BytesIO(out_a))
    assert image.format == "PNG" and image.size == (171, 256)  # 864x1296 scaled down
    pixel = image.convert("RGB").getpixel((85, 140))  # centre: the model image
    assert isinstance(pixel, tuple)
    red, green, blue = pixel
    assert red > 150 and green < 80 and blue < 80


def test_sizes_formats_and_counts(server: EmulatorServer) -> None:
    with api_client(server) as client:
        status = run(
            client,
            "tryon-max",
            {
                "model_image": RED,
                "product_image": BLUE,
                "aspect_ratio": "16:9",
                "output_format": "jpeg",
                "num_images": 3,
            },
        )
        urls = status.json()["output"]
        assert len(urls) == 3 and all(u.endswith(".jpeg") for u in urls)
        images = [fetch(client, url) for url in urls]
        head = client.get(urls[0])
    assert head.headers["content-type"] == "image/jpeg"
    assert len(set(images)) == 3  # each output is distinct
    for data in images:
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG" and image.size == (256, 144)


def test_background_remove_is_transparent_png(server: EmulatorServer) -> None:
    with api_client(server) as client:
        status = run(client, "background-remove", {"image": RED})
        image = Image.open(io.BytesIO(fetch(client, status.json()["output"][0])))
    assert image.mode == "RGBA"
    edge = image.getpixel((image.width - 2, image.height // 2))
    centre = image.getpixel((image.width // 2, image.height // 2))
    assert isinstance(edge, tuple) and isinstance(centre, tuple)
    assert edge[3] == 0 and centre[3] == 255


def test_saved_model_image_and_model_create(server: EmulatorServer) -> None:
    with api_client(server) as client:
        saved = run(client, "tryon-v1.6", {"model_image": "saved:anna", "garment_image": RED})
        created = run(client, "model-create", {"prompt": "a person in a red coat"})
        assert saved.json()["status"] == "completed"
        assert created.json()["status"] == "completed"
        image = Image.open(io.BytesIO(fetch(client, created.json()["output"][0])))
    assert image.size == (256, 256)  # model-create defaults to 1:1


def test_image_to_video_is_mp4(server: EmulatorServer) -> None:
    with api_client(server) as client:
        status = run(client, "image-to-video", {"image": RED, "resolution": "480p"})
        (url,) = status.json()["output"]
        assert url.endswith("/output_0.mp4")
        response = client.get(url)
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp" and b"moov" in response.content
    assert b"mvhd" in response.content and b"mdat" in response.content


def test_reframe_rejects_matching_ratio(server: EmulatorServer) -> None:
    with api_client(server) as client:
        same = run(client, "reframe", {"image": RED, "aspect_ratio": "2:3"})  # 60x90 is 2:3
        other = run(client, "reframe", {"image": RED, "aspect_ratio": "16:9"})
    assert same.json()["status"] == "failed"
    assert same.json()["error"] == {
        "name": "InputValidationError",
        "message": "Image already matches target aspect ratio",
    }
    assert other.json()["status"] == "completed"


def test_image_load_errors(server: EmulatorServer) -> None:
    text_url = server.put_file("note.txt", b"hello", "text/plain;charset=UTF-8")
    junk_url = server.put_file("junk.png", b"not really a png", "image/png")
    cases = {
        "unreachable": f"http://127.0.0.1:{free_port()}/person.png",
        "missing": f"{server.url}/files/does-not-exist.png",
        "text": text_url,
        "junk": junk_url,
        "bad_base64": "data:image/png;base64,@@@not-base64@@@",
        "remote": "https://images.example.com/person.png",
    }
    with api_client(server) as client:
        results = {
            name: run(client, "tryon-v1.6", {"model_image": url, "garment_image": RED}).json()
            for name, url in cases.items()
        }
    for name, body in results.items():
        assert body["status"] == "failed", name
        assert body["error"]["name"] == "ImageLoadError", name
        assert body["error"]["message"].startswith("Error loading model image: "), name
    assert results["text"]["error"]["message"] == (
        "Error loading model image: The URL's Content-Type is not an image. "
        "Content-Type: text/plain;charset=UTF-8"
    )
    assert "loopback" in results["remote"]["error"]["message"]
    assert "HTTP 404" in results["missing"]["error"]["message"]


def test_garment_load_error_names_the_field(server: EmulatorServer) -> None:
    with api_client(server) as client:
        body = run(
            client, "tryon-v1.6", {"model_image": RED, "garment_image": "data:image/png;base64,!!"}
        ).json()
    assert body["error"]["message"].startswith("Error loading garment image: ")


def test_cdn_urls_expire_after_72_hours(server: EmulatorServer) -> None:
    with api_client(server) as client:
        url = run(client, "background-remove", {"image": RED}).json()["output"][0]
        assert client.get(url).status_code == 200
        server.advance_clock(71 * 3600)
        assert client.get(url).status_code == 200
        server.advance_clock(3600)
        assert client.get(url).status_code == 404
        assert client.get(url.replace("output_0", "output_7")).status_code == 404


def test_base64_outputs_expire_after_60_minutes(server: EmulatorServer) -> None:
    with api_client(server) as client:
        status = run(
            client,
            "tryon-v1.6",
            {"model_image": RED, "garment_image": BLUE, "return_base64": True, "num_samples": 2},
        )
        pid = status.json()["id"]
        outputs = status.json()["output"]
        assert len(outputs) == 2
        for uri in outputs:
            assert uri.startswith("data:image/png;base64,")
            image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
            assert image.format == "PNG"
        assert client.get(f"{server.url}/cdn/{pid}/output_0.png").status_code == 404
        server.advance_clock(59 * 60)
        assert client.get(f"/v1/status/{pid}").json()["output"] == outputs
        server.advance_clock(61)
        assert client.get(f"/v1/status/{pid}").json()["output"] == ["<base64>_expired"] * 2
