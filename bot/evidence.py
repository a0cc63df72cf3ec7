"""Evidence photos: never trust what an upload claims to be.

`check` does everything before anything is written: the declared and the real size are checked
before decoding, the pixel count (from the header) before the full decode (Pillow's
decompression-bomb warning becomes a rejection), and only then is the image decoded — JPEGs at a
reduced scale (`draft`), so a 40 MP photo never exists in memory at full size — downscaled to at
most `max_side` pixels on its long side, converted to sRGB if it carries a colour profile, turned
upright by its EXIF orientation and re-encoded as a fresh JPEG that carries nothing else: no EXIF
(so no GPS, no camera serial), no XMP, no IPTC, no ICC profile, no comment. At most
`max_decodes` images are decoded at once, whatever the number of photos arriving.

`keep` writes a photo the dialogue decided to keep, under a random name, in a folder only the
service user can read (0700, files 0600). `expire` deletes kept photos older than the tickets
they belong to: the time-driven work calls it with the store's TTL.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import stat
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pillow_heif
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from bot.dialogue import PhotoCheck
from bot.messages import Attachment

pillow_heif.register_heif_opener()  # once, at import: HEIC/HEIF photos from phones open like any other

_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "MPO"}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_UPRIGHT = {  # EXIF orientation -> the transposition that undoes it
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FILE_MODE = 0o600
_FOLDER_MODE = 0o700
_SUFFIX = ".jpg"


class EvidenceStore:
    def __init__(
        self, folder: Path, *, max_bytes: int, max_pixels: int, max_side: int = 2048, max_decodes: int = 2
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.max_side = max_side
        # Decoding takes memory and a core: a burst of photos waits here rather than all decoding at
        # once, and decodes on threads of its own, so the memory the C allocator keeps for a thread
        # after a decode is kept for `max_decodes` threads, not for every worker thread there is.
        self._decodes = asyncio.Semaphore(max_decodes)
        self._decoders = ThreadPoolExecutor(max_workers=max_decodes, thread_name_prefix="evidence-decode")
        weakref.finalize(self, self._decoders.shutdown, wait=False)

    async def check(self, attachment: Attachment) -> PhotoCheck:
        """Validate, decode and clean one attachment off the event loop. Nothing is written:
        the cleaned JPEG waits in memory (`data`) until the dialogue keeps it (`keep`)."""
        if len(attachment.data) > self.max_bytes or attachment.size > self.max_bytes:
            return PhotoCheck(False, "too_large")  # before waiting for a decoder, let alone decoding
        async with self._decodes:
            return await asyncio.get_running_loop().run_in_executor(self._decoders, self._check, attachment.data)

    async def keep(self, check: PhotoCheck) -> None:
        """Write a photo the dialogue decided to keep, under its random name, readable by the
        service user only."""
        if check.accepted and check.ref and check.data:
            await asyncio.to_thread(self._write, check.ref, check.data)

    async def expire(self, max_age_seconds: float) -> int:
        """Delete kept photos last written more than `max_age_seconds` ago; returns how many.

        Photos live as long as the tickets they were sent for: the manager's time-driven `tick`
        calls this with the store's TTL."""
        return await asyncio.to_thread(self._expire, max_age_seconds)

    # -- on a worker thread --------------------------------------------------------------------

    def _check(self, data: bytes) -> PhotoCheck:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    if image.format not in _FORMATS:
                        return PhotoCheck(False, "not_image", is_image=False)
                    width, height = image.size
                    if width * height > self.max_pixels:
                        return PhotoCheck(False, "too_many_pixels")
                    cleaned = self._clean(image)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            return PhotoCheck(False, "too_many_pixels")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return PhotoCheck(False, "not_image", is_image=False)
        out = io.BytesIO()
        cleaned.save(out, format="JPEG", quality=88)
        return PhotoCheck(True, ref=f"{secrets.token_urlsafe(16)}{_SUFFIX}", data=out.getvalue())

    def _clean(self, image: Image.Image) -> Image.Image:
        """The picture and nothing else: small enough, sRGB, upright, with no metadata at all."""
        orientation = image.getexif().get(ExifTags.Base.Orientation)
        icc = image.info.get("icc_profile")
        box = (self.max_side, self.max_side)
        # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the box: the full-size
        # pixels are never allocated. Other formats ignore this and decode at full size (bounded
        # by max_pixels and by the number of decodes at once).
        image.draft("RGB", _fitted(image.size, box))
        image.load()
        picture: Image.Image = image
        if picture.mode in ("1", "P", "PA"):  # resampling needs real colours, not palette indexes
            picture = picture.convert("RGBA" if picture.has_transparency_data else "RGB")
        if picture.width > self.max_side or picture.height > self.max_side:
            picture = picture.resize(_fitted(picture.size, box), Image.Resampling.LANCZOS, reducing_gap=3.0)
        picture = _srgb(_flattened(picture), icc)
        transposition = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
        if transposition is not None:
            picture = picture.transpose(transposition)
        # A fresh image: its `info` is empty, so the encoder finds nothing to carry over (Pillow
        # writes an image's own `comment` into the JPEG unless told otherwise).
        clean = Image.new("RGB", picture.size)
        clean.paste(picture)
        return clean

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(mode=_FOLDER_MODE, parents=True, exist_ok=True)
        os.chmod(self.folder, _FOLDER_MODE)  # whatever the umask, or an older, wider folder
        path = self.folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
        try:
            os.fchmod(fd, _FILE_MODE)  # os.open's mode passes through the umask
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _expire(self, max_age_seconds: float) -> int:
        cutoff = time.time() - max_age_seconds
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.endswith(_SUFFIX):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # removed meanwhile, by another sweep
                continue
        return removed


def _fitted(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled down, keeping its proportions, to fit in `box` (never scaled up)."""
    width, height = size
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _flattened(picture: Image.Image) -> Image.Image:
    """Transparent areas shown on white, as a viewer would, rather than on whatever colour hides there."""
    if picture.mode in ("RGBA", "LA"):
        base = Image.new(picture.mode[:-1], picture.size, 255 if picture.mode == "LA" else (255, 255, 255))
        base.paste(picture, mask=picture.getchannel("A"))
        return base
    return picture


def _srgb(picture: Image.Image, icc: object) -> Image.Image:
    """The picture in sRGB, the colour space a JPEG without a profile is read in."""
    if isinstance(icc, bytes) and icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(picture, profile, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            converted = None  # a broken or mismatched profile: the colours as they are beat no photo
        if converted is not None:
            return converted
    return picture if picture.mode == "RGB" else picture.convert("RGB")
