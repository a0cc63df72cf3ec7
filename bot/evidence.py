"""Evidence photos: never trust what an upload claims to be.

Size is checked before decoding, the pixel count before the full decode (Pillow's
decompression-bomb warning becomes a rejection), and every accepted image is re-encoded — which
applies the EXIF orientation and drops all metadata (GPS, camera serials) — under a random name.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.dialogue import PhotoCheck
from bot.messages import Attachment

_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "MPO"}


class EvidenceStore:
    def __init__(self, folder: Path, *, max_bytes: int, max_pixels: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    async def check(self, attachment: Attachment) -> PhotoCheck:
        """Validate, decode and clean one attachment off the event loop. Nothing is written:
        the cleaned image waits in memory until the dialogue keeps it (`keep`)."""
        return await asyncio.to_thread(self._check, attachment)

    async def keep(self, check: PhotoCheck) -> None:
        """Write a photo the dialogue decided to keep, under its random name."""
        if check.accepted and check.ref and check.data:
            await asyncio.to_thread(self._write, check.ref, check.data)

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / name).write_bytes(data)

    def _check(self, attachment: Attachment) -> PhotoCheck:
        data = attachment.data
        if len(data) > self.max_bytes or attachment.size > self.max_bytes:
            return PhotoCheck(False, "too_large")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    if image.format not in _FORMATS:
                        return PhotoCheck(False, "not_image", is_image=False)
                    width, height = image.size
                    if width * height > self.max_pixels:
                        return PhotoCheck(False, "too_many_pixels")
                    image.load()
                    upright = ImageOps.exif_transpose(image).convert("RGB")
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            return PhotoCheck(False, "too_many_pixels")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return PhotoCheck(False, "not_image", is_image=False)
        out = io.BytesIO()
        upright.save(out, format="JPEG", quality=88)  # a fresh file: no EXIF, no comments
        return PhotoCheck(True, ref=f"{secrets.token_urlsafe(16)}.jpg", data=out.getvalue())
