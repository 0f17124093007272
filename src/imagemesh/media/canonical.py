"""The canonical image: the one form of a figure that every embedding sees and the explorer shows.

A decoded figure is scaled so that its longest side is at most :data:`CANONICAL_MAX_SIDE`
pixels, JPEG-encoded once (quality :data:`CANONICAL_QUALITY`) and decoded again. The JPEG
bytes are what a collection stores (``media`` table); the decoded RGB image is what the
networks get. Doing the round trip at build time means an embedding added later, an
upload, or a worker on another machine sees exactly the same pixels.
"""

from __future__ import annotations

import io

from PIL import Image

from imagemesh.media.images import make_thumbnail

__all__ = ["CANONICAL_MAX_SIDE", "CANONICAL_QUALITY", "canonical_image", "decode_jpeg"]

#: Longest side (px) of the canonical image every embedding sees and the explorer shows.
CANONICAL_MAX_SIDE = 512
#: JPEG quality (1-95, Pillow's scale) of the canonical image.
CANONICAL_QUALITY = 90


def canonical_image(img: Image.Image) -> tuple[bytes, Image.Image]:
    """The canonical form of a decoded figure.

    Args:
        img: any Pillow image (not modified).

    Returns:
        ``(jpeg_bytes, rgb_image)``: the JPEG (longest side <= 512 px) and the RGB image
        decoded back from it.
    """
    data = make_thumbnail(img, max_side=CANONICAL_MAX_SIDE, quality=CANONICAL_QUALITY)
    return data, decode_jpeg(data)


def decode_jpeg(data: bytes) -> Image.Image:
    """Decode JPEG (or any Pillow-readable) bytes to a loaded RGB image.

    Raises:
        PIL.UnidentifiedImageError, OSError: the bytes are not a readable image.
    """
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB")
