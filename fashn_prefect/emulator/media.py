"""Output media: small real images composed from the inputs, and an MP4 placeholder.

Images: the primary input (model/product/face/source image) is fitted to the requested aspect
ratio, the other inputs are pasted as thumbnails, and a visible "EMULATED" mark with the model
name, nominal size and output index is drawn. The longest edge is at most ``MAX_EDGE`` px (the
nominal size the real API would produce is written on the image instead).

Video ([UNCONFIRMED] fidelity, documented choice): ``image-to-video`` outputs are a minimal ISO
BMFF file — an ``ftyp`` box (brand ``isom``), a ``moov`` box holding a single ``mvhd`` with the
requested duration, and an ``mdat`` box whose payload is a fingerprint of the inputs. It is a
structurally valid MP4 container (players will show no frames).
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Mapping, Sequence

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps

MAX_EDGE = 256
_MEGAPIXELS = {
    "v1.6": 1.1197,
    "1k": 1.0,
    "2k": 4.0,
    "4k": 16.0,
    "480p": 0.41,
    "720p": 0.92,
    "1080p": 2.07,
}


def parse_ratio(value: object) -> float | None:
    """``"2:3"`` -> 0.666...; None if not a ``W:H`` string."""
    if not isinstance(value, str) or ":" not in value:
        return None
    try:
        width, height = (float(part) for part in value.split(":", 1))
    except ValueError:
        return None
    return width / height if width > 0 and height > 0 else None


def nominal_size(ratio: float, resolution: object) -> tuple[int, int]:
    """Approximate pixel size the real API would produce for a ratio and resolution label."""
    megapixels = _MEGAPIXELS.get(str(resolution), 1.0)
    height = (megapixels * 1_000_000 / ratio) ** 0.5
    return round(height * ratio / 8) * 8, round(height / 8) * 8


def preview_size(ratio: float) -> tuple[int, int]:
    """Size of the emitted image: the ratio with the longest edge ``MAX_EDGE``."""
    if ratio >= 1:
        return MAX_EDGE, max(1, round(MAX_EDGE / ratio))
    return max(1, round(MAX_EDGE * ratio)), MAX_EDGE


def _colour(text: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(text.encode()).digest()
    return digest[0], digest[1], digest[2]


def placeholder_person(name: str) -> Image.Image:
    """A simple figure standing in for a Models Studio ``saved:<name>`` model image."""
    image = Image.new("RGB", (200, 300), _colour("bg" + name))
    draw = ImageDraw.Draw(image)
    skin, cloth = _colour("skin" + name), _colour("cloth" + name)
    draw.ellipse((75, 20, 125, 75), fill=skin)
    draw.rectangle((60, 80, 140, 200), fill=cloth)
    draw.rectangle((65, 200, 95, 290), fill=cloth)
    draw.rectangle((105, 200, 135, 290), fill=cloth)
    draw.text((5, 5), f"saved:{name}"[:30], fill=(255, 255, 255))
    return image


def generated_backdrop(seed_text: str, size: tuple[int, int]) -> Image.Image:
    """A deterministic gradient used when a model has no input image (e.g. model-create)."""
    top, bottom = _colour("top" + seed_text), _colour("bottom" + seed_text)
    gradient = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), gradient)


def remove_background(image: Image.Image) -> Image.Image:
    """Crude background removal: pixels close to the corner colour become transparent."""
    rgb = image.convert("RGB")
    corner = rgb.getpixel((0, 0))
    assert isinstance(corner, tuple)
    difference = ImageChops.difference(rgb, Image.new("RGB", rgb.size, corner[:3])).convert("L")
    alpha = difference.point(lambda value: 0 if value < 20 else 255)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(alpha)
    return rgba


def render_image(
    *,
    model_name: str,
    primary: Image.Image | None,
    extras: Sequence[Image.Image],
    ratio: float,
    resolution: object,
    index: int,
    variant: str,
    transparent: bool = False,
    pad: bool = False,
) -> Image.Image:
    """Compose one output image from the inputs plus a visible EMULATED mark."""
    size = preview_size(ratio)
    if primary is None:
        canvas = generated_backdrop(variant, size)
    elif pad:
        canvas = ImageOps.pad(primary.convert("RGB"), size, color=_colour("pad" + variant))
    else:
        canvas = ImageOps.fit(primary.convert("RGB"), size, Image.Resampling.BILINEAR)
    if transparent:
        canvas = remove_background(canvas)
    else:
        tint = Image.new("RGB", size, _colour(f"{variant}:{index}"))
        canvas = Image.blend(canvas, tint, 0.12)
    thumb_edge = max(16, min(size) // 3)
    x = size[0] - 4
    for extra in extras:
        thumb = ImageOps.contain(extra.convert("RGB"), (thumb_edge, thumb_edge))
        x -= thumb.width
        if x < 0:
            break
        canvas.paste(thumb, (x, size[1] - thumb.height - 4))
        x -= 4
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    width, height = nominal_size(ratio, resolution)
    lines = ["EMULATED", model_name, f"{width}x{height} #{index}"]
    draw.rectangle((0, 0, size[0], 12 * len(lines) + 4), fill=(0, 0, 0))
    for row, text in enumerate(lines):
        draw.text((4, 2 + 12 * row), text, fill=(255, 255, 0), font=font)
    return canvas


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """Encode as PNG or JPEG bytes."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def placeholder_mp4(duration_seconds: float, fingerprint: bytes) -> bytes:
    """Minimal MP4 container: ftyp + moov(mvhd) + mdat (see module docstring)."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    timescale = 1000
    mvhd = _box(
        b"mvhd",
        struct.pack(">B3xIIII", 0, 0, 0, timescale, round(duration_seconds * timescale))
        + struct.pack(">IH10x", 0x00010000, 0x0100)
        + struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
        + bytes(24)
        + struct.pack(">I", 2),
    )
    return ftyp + _box(b"moov", mvhd) + _box(b"mdat", b"FASHN-EMULATOR" + fingerprint)


def image_fingerprint(images: Mapping[str, Image.Image]) -> bytes:
    """sha256 over the inputs' pixels (used to make video placeholders input-dependent)."""
    digest = hashlib.sha256()
    for name in sorted(images):
        digest.update(name.encode())
        digest.update(images[name].convert("RGB").resize((32, 32)).tobytes())
    return digest.digest()
