"""Synthetic but recognisable demo images: garments and model figures drawn with Pillow."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

GARMENT_COLOURS = [
    ("crimson", (196, 30, 58)),
    ("navy", (31, 46, 94)),
    ("mustard", (222, 170, 40)),
    ("forest", (34, 110, 60)),
    ("blush", (236, 170, 180)),
    ("charcoal", (60, 60, 66)),
    ("teal", (20, 140, 150)),
    ("ivory", (238, 232, 214)),
    ("plum", (110, 50, 110)),
    ("sky", (120, 180, 230)),
    ("rust", (180, 80, 40)),
    ("olive", (120, 124, 50)),
]
PATTERNS = ("plain", "stripes", "dots")
SKIN = [(236, 200, 170), (190, 140, 100), (120, 80, 55)]
BACKDROPS = [(228, 232, 238), (240, 234, 224), (226, 238, 228)]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def garment(index: int) -> tuple[str, bytes]:
    """A T-shirt in one of 12 colours and 3 patterns; returns (name, PNG bytes)."""
    name, colour = GARMENT_COLOURS[index % len(GARMENT_COLOURS)]
    pattern = PATTERNS[index % len(PATTERNS)]
    image = Image.new("RGB", (512, 512), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    shirt = [
        (150, 90),
        (210, 70),
        (256, 100),
        (302, 70),
        (362, 90),
        (440, 170),
        (390, 215),
        (360, 190),
        (360, 440),
        (152, 440),
        (152, 190),
        (122, 215),
        (72, 170),
    ]
    draw.polygon(shirt, fill=colour, outline=(30, 30, 30))
    accent = tuple(255 - c for c in colour)
    if pattern == "stripes":
        for y in range(120, 440, 36):
            draw.rectangle([152, y, 360, y + 12], fill=accent)
    elif pattern == "dots":
        for y in range(130, 430, 44):
            for x in range(175, 350, 44):
                draw.ellipse([x, y, x + 16, y + 16], fill=accent)
    draw.polygon(shirt, outline=(30, 30, 30))
    draw.text((20, 480), f"{name} {pattern} tee", fill=(20, 20, 20))
    return f"{name}-{pattern}-tee", _png(image)


def model(index: int) -> tuple[str, bytes]:
    """A standing figure on a plain backdrop; returns (name, PNG bytes)."""
    skin = SKIN[index % len(SKIN)]
    image = Image.new("RGB", (512, 768), BACKDROPS[index % len(BACKDROPS)])
    draw = ImageDraw.Draw(image)
    draw.ellipse([206, 60, 306, 170], fill=skin)
    draw.rectangle([236, 165, 276, 195], fill=skin)
    draw.rounded_rectangle(
        [176, 190, 336, 450], radius=30, fill=(245, 245, 245), outline=(90, 90, 90)
    )
    draw.rectangle([136, 200, 176, 430], fill=skin)
    draw.rectangle([336, 200, 376, 430], fill=skin)
    draw.rectangle([186, 450, 250, 720], fill=(50, 60, 90))
    draw.rectangle([262, 450, 326, 720], fill=(50, 60, 90))
    draw.text((20, 740), f"model {index + 1}", fill=(20, 20, 20))
    return f"model-{index + 1}", _png(image)
