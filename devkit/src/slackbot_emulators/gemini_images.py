"""Image output of the Interactions emulator: which requests may ask for images, their size, and
real PNGs drawn by hand (no imaging library) whose pixels encode the prompt.

Shapes as google-genai 3.6.1 defines them (`_gaos/types/interactions/`):
  * ask: `response_modalities: ["image"]` (responsemodality.py, lower case; marked deprecated in
    createmodelinteraction.py) or `response_format: {"type": "image", "aspect_ratio", "image_size",
    "mime_type", "delivery"}` (imageresponseformat.py), size and shape in
    `generation_config.image_config {aspect_ratio, image_size}` (imageconfig.py);
  * answer: `{"type": "image", "mime_type", "data": <base64>}` content in the model_output step
    (imagecontent.py), streamed as a `step.delta` whose delta is `{"type": "image", ...}`
    (imagedelta.py); image tokens in `usage.output_tokens_by_modality` (usage.py, modalitytokens.py).

Pure: request fields in, checks (400 as `ApiError`), sizes and PNG bytes out.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from typing import Callable

MODALITIES = {"text", "image", "audio", "video", "document"}  # responsemodality.py
ASPECT_RATIOS = {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
                 "1:8", "8:1", "1:4", "4:1"}  # imageconfig.py / imageresponseformat.py
_SIDE = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}  # image_size -> side of the square
# published per-image output token counts of the image models (1K and 2K cost the same)
IMAGE_TOKENS = {"512": 560, "1K": 1120, "2K": 1120, "4K": 2000}
# what the Gemini API answers when a model cannot produce the modality asked for
NO_IMAGE_MODALITY = "Model does not support the requested response modalities: image"
SAFETY_BLOCK = {"code": 3, "message": "The image was not generated: the request was blocked by safety filters.",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IMAGE_SAFETY",
                             "domain": "generativelanguage.googleapis.com"}]}


def is_image_model(model: str) -> bool:
    """gemini-3-pro-image-preview, gemini-3.1-flash-image-preview, gemini-2.5-flash-image, ..."""
    return "-image" in model


def image_request(body: dict, error: Callable[[str], Exception]) -> dict | None:
    """The image options of a model create ({aspect_ratio, image_size, text}), or None when it asks
    for no image. Raises ``error(message)`` for what the API refuses."""
    modalities = body.get("response_modalities")
    if modalities is not None:
        if not isinstance(modalities, list) or not all(m in MODALITIES for m in modalities):
            raise error(f"response_modalities: each entry is one of {sorted(MODALITIES)}.")
    formats = body.get("response_format")
    formats = formats if isinstance(formats, list) else [formats] if formats is not None else []
    image_formats = [f for f in formats if isinstance(f, dict) and f.get("type") == "image"]
    image_model = is_image_model(str(body.get("model", "")))
    asked = "image" in (modalities or []) or bool(image_formats)
    if asked and not image_model:
        raise error(NO_IMAGE_MODALITY)
    if not image_model or (modalities is not None and "image" not in modalities and not image_formats):
        return None
    config = (body.get("generation_config") or {}).get("image_config") or {}
    if image_formats:
        config = {**config, **{k: v for k, v in image_formats[0].items() if k in ("aspect_ratio", "image_size")}}
    if not isinstance(config, dict):
        raise error("generation_config.image_config must be an object.")
    aspect, size = config.get("aspect_ratio", "1:1"), config.get("image_size", "1K")
    if aspect not in ASPECT_RATIOS:
        raise error(f"image_config.aspect_ratio: unsupported value {aspect!r}.")
    if size not in _SIDE:
        raise error(f"image_config.image_size: unsupported value {size!r} (512, 1K, 2K, 4K).")
    # an image model answers with words too unless the request asks for images alone
    text = modalities is None or "text" in modalities
    return {"aspect_ratio": aspect, "image_size": size, "text": text}


def dimensions(aspect_ratio: str, image_size: str, scale: float = 1.0) -> tuple[int, int]:
    """Width and height for a shape and size: the area of the size's square, the ratio's shape,
    multiples of 16 as the models produce (1K 16:9 -> 1360x768). ``scale`` shrinks both sides
    (the emulator's small default) but never below 8 pixels."""
    w_part, h_part = (int(n) for n in aspect_ratio.split(":"))
    side = _SIDE[image_size] * scale
    ratio = math.sqrt(w_part / h_part)
    width, height = side * ratio, side / ratio
    step = 16 if scale >= 1 else 1
    return max(8, round(width / step) * step), max(8, round(height / step) * step)


def band_colours(seed: bytes) -> list[tuple[int, int, int]]:
    """Four colours from the seed's SHA-256: the picture's horizontal bands, top to bottom."""
    digest = hashlib.sha256(seed).digest()
    return [tuple(digest[i:i + 3]) for i in range(0, 12, 3)]


def render(seed: bytes, width: int, height: int, noise: bool = False) -> bytes:
    """A PNG of four horizontal bands coloured by ``band_colours(seed)``; with ``noise`` the low
    four bits of every channel are pseudo-random (from the seed), so the file is about as large
    as a photograph of that size (for memory benchmarks) while the bands stay readable."""
    colours = band_colours(seed)
    stride = width * 3
    pixels = b"".join(bytes(colours[min(3, y * 4 // height)]) * width for y in range(height))
    if noise:
        n = len(pixels)
        mask = int.from_bytes(hashlib.shake_256(seed).digest(n), "big") & int.from_bytes(b"\x0f" * n, "big")
        pixels = (int.from_bytes(pixels, "big") ^ mask).to_bytes(n, "big")  # bignum ops: C speed
    rows = [b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height)]  # filter 0 per row
    return encode_png(width, height, rows, level=1 if noise else 6)


def encode_png(width: int, height: int, rows: list[bytes], level: int = 6) -> bytes:
    """An 8-bit RGB PNG from scanlines that already carry their filter byte."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), level))
            + chunk(b"IEND", b""))


def bar_chart_png(values: list[int], bar: int = 16, scale: int = 9) -> bytes:
    """A bar chart of ``values``: the plot a code run or a research report shows."""
    width, height = bar * len(values) + bar, scale * max(values) + bar
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            n, inside = divmod(x - bar // 2, bar)
            filled = 0 <= n < len(values) and inside < bar - 4 and height - bar // 2 - y <= values[n] * scale \
                and y < height - bar // 2
            row += bytes((66, 133, 244) if filled else (255, 255, 255))
        rows.append(bytes(row))
    return encode_png(width, height, rows)


def read_png(data: bytes) -> tuple[int, int, Callable[[int, int], tuple[int, int, int]]]:
    """Width, height and a pixel reader of a PNG this module wrote (8-bit RGB, filter 0): lets a
    test check what an uploaded picture shows without an imaging library."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3 + 1

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        at = y * stride + 1 + x * 3
        return raw[at], raw[at + 1], raw[at + 2]
    return width, height, pixel
