"""Evidence photos: decoded to validate, capped, re-encoded without metadata, stored under random names."""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pillow_heif
import pytest
import yaml
from PIL import ExifTags, Image, IptcImagePlugin

from bot.evidence import EvidenceStore
from bot.messages import Attachment
from tests.factories import jpeg, message, photo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def evidence(tmp_path):
    return EvidenceStore(tmp_path, max_bytes=1_000_000, max_pixels=4_000_000)


def attach(data: bytes, mime: str = "image/jpeg") -> Attachment:
    return Attachment("photo", data, mime, len(data), "x.jpg")


def test_a_real_photo_is_accepted_and_stored_under_a_random_name(evidence, tmp_path, run):
    first = run(evidence.check(attach(jpeg())))
    second = run(evidence.check(attach(jpeg())))
    assert first.accepted and second.accepted
    assert first.ref != second.ref and len(first.ref) > 20
    assert not (tmp_path / first.ref).exists()  # checked, not yet kept by the dialogue
    run(evidence.keep(first))
    assert (tmp_path / first.ref).is_file()


def test_exif_is_stripped_and_orientation_applied(evidence, tmp_path, run):
    image = Image.new("RGB", (300, 100), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    exif[0x010F] = "SecretCam"  # camera make
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    assert b"SecretCam" in out.getvalue()  # the upload does carry it
    check = run(evidence.check(attach(out.getvalue())))
    run(evidence.keep(check))
    with Image.open(tmp_path / check.ref) as stored:
        assert stored.size == (100, 300)  # upright now
        assert not stored.getexif()
        assert b"SecretCam" not in (tmp_path / check.ref).read_bytes()


def test_bytes_that_claim_to_be_jpeg_but_are_not_are_rejected(evidence, run):
    check = run(evidence.check(attach(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)))
    assert (check.accepted, check.reason) == (False, "not_image")


def test_oversize_files_are_rejected_before_decoding(evidence, run):
    check = run(evidence.check(attach(b"x" * 1_000_001)))
    assert (check.accepted, check.reason) == (False, "too_large")


def test_a_decompression_bomb_is_rejected(evidence, run):
    out = io.BytesIO()
    Image.new("1", (3000, 2000)).save(out, format="PNG")  # 6 MP in a few kilobytes
    assert len(out.getvalue()) < 100_000
    check = run(evidence.check(attach(out.getvalue(), "image/png")))
    assert (check.accepted, check.reason) == (False, "too_many_pixels")


def test_photos_nobody_asked_for_are_kept_only_up_to_a_flow_s_maximum(make_manager, run, tmp_path):
    """Thirty messages of three photos each, outside any flow, store at most five files."""
    manager = make_manager()
    for n in range(30):
        run(manager.handle(message(attachments=(photo(), photo(), photo()), message_id=f"m{n}")))
    stored = list((tmp_path / "evidence").glob("*.jpg"))
    state = run(manager.conversation("console:c1"))
    assert len(stored) == len(state.early_photos) == 5


def test_a_rejected_or_unkept_photo_writes_nothing(make_manager, run, tmp_path):
    manager = make_manager()
    run(manager.handle(message(attachments=(attach(b"not an image at all" * 50),))))
    assert not (tmp_path / "evidence").exists() or list((tmp_path / "evidence").iterdir()) == []


# -- declared and real size ---------------------------------------------------------------------


def test_a_declared_size_over_the_limit_is_rejected_before_decoding(evidence, run):
    small = jpeg()
    check = run(evidence.check(Attachment("photo", small, "image/jpeg", 1_000_001, "x.jpg")))
    assert (check.accepted, check.reason, check.data) == (False, "too_large", b"")


def test_every_rejection_names_a_reason_each_language_can_say(evidence, run):
    bomb = io.BytesIO()
    Image.new("1", (3000, 2000)).save(bomb, format="PNG")
    reasons = {
        run(evidence.check(attach(b"not an image" * 10))).reason,
        run(evidence.check(attach(b"x" * 1_000_001))).reason,
        run(evidence.check(attach(bomb.getvalue(), "image/png"))).reason,
    }
    assert reasons == {"not_image", "too_large", "too_many_pixels"}
    for texts in sorted((ROOT / "locales").glob("*/texts.yml")):
        assert reasons <= set(yaml.safe_load(texts.read_text(encoding="utf-8"))["photo_reasons"]), texts


# -- nothing but the picture ----------------------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def icc_profile_with_red_and_blue_swapped() -> bytes:
    """An RGB colour profile whose red primary is sRGB's blue and the other way round: a pixel
    that reads red without it is blue once converted, so a test can see the conversion."""
    red, green, blue = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)  # sRGB, D50
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"  # gamma 2.2
    tags = [
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(*blue)),
        (b"gXYZ", _xyz(*green)),
        (b"bXYZ", _xyz(*red)),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
    ]
    table, body, start = b"", b"", 128 + 4 + 12 * len(tags)
    for signature, data in tags:
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    header = struct.pack(
        ">I4sI4s4s4s12s4s", start + len(body), b"", 0x02100000, b"mntr", b"RGB ", b"XYZ ", b"", b"acsp"
    )
    header += b"\0" * 24 + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + body


def iptc_segment(by_line: bytes) -> bytes:
    """An APP13 segment as Photoshop writes IPTC: a By-line (2:80) record in an 8BIM resource."""
    record = b"\x1c\x02\x50" + len(by_line).to_bytes(2, "big") + by_line
    resource = b"8BIM\x04\x04\0\0" + len(record).to_bytes(4, "big") + record + b"\0" * (len(record) % 2)
    payload = b"Photoshop 3.0\0" + resource
    return b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload


def jpeg_markers(data: bytes) -> list[int]:
    """The segment markers of a JPEG, from its start up to and including its image data (SOS)."""
    assert data[:2] == b"\xff\xd8"
    markers, at = [], 2
    while True:
        assert data[at] == 0xFF
        markers.append(data[at + 1])
        if data[at + 1] == 0xDA:
            return markers
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")


def test_no_metadata_survives_exif_gps_xmp_iptc_icc_or_comment_and_orientation_is_applied(evidence, tmp_path, run):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown rotated 90°
    exif[ExifTags.Base.Make] = "SecretCam"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (35, 39, 29)}
    )
    upload = io.BytesIO()
    Image.new("RGB", (300, 100), (10, 200, 10)).save(
        upload,
        format="JPEG",
        exif=exif,
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">SecretXMP</x:xmpmeta>',
        icc_profile=icc_profile_with_red_and_blue_swapped(),
        comment=b"SecretComment",
        extra=iptc_segment(b"Secret Photographer"),
    )
    with Image.open(upload) as sent:  # the upload does carry every kind of metadata
        assert sent.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert {"exif", "xmp", "icc_profile", "comment"} <= set(sent.info)
        assert IptcImagePlugin.getiptcinfo(sent) == {(2, 80): b"Secret Photographer"}

    check = run(evidence.check(attach(upload.getvalue())))
    run(evidence.keep(check))
    kept = (tmp_path / check.ref).read_bytes()

    markers = jpeg_markers(kept)
    assert [m for m in markers if 0xE0 <= m <= 0xEF] == [0xE0]  # only the JFIF header: no EXIF, XMP, ICC, IPTC
    assert 0xFE not in markers  # no comment segment
    for secret in (b"SecretCam", b"SecretXMP", b"SecretComment", b"Secret Photographer", b"Photoshop", b"acsp"):
        assert secret not in kept
    with Image.open(tmp_path / check.ref) as stored:
        assert stored.size == (100, 300)  # upright
        assert not stored.getexif()
        assert not {"exif", "xmp", "icc_profile", "comment", "photoshop"} & set(stored.info)


def test_a_colour_profile_is_applied_before_it_is_dropped(evidence, run):
    upload = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(
        upload, format="JPEG", icc_profile=icc_profile_with_red_and_blue_swapped()
    )
    check = run(evidence.check(attach(upload.getvalue())))
    with Image.open(io.BytesIO(check.data)) as stored:
        red, green, blue = stored.getpixel((32, 32))
        assert "icc_profile" not in stored.info
    assert blue > 180 and red < 60 and green < 60  # what the profile meant: blue, now in sRGB


@pytest.mark.parametrize(
    ("mode", "format"),
    [("RGBA", "PNG"), ("LA", "PNG"), ("P", "GIF"), ("L", "JPEG"), ("CMYK", "JPEG"), ("1", "BMP"), ("RGB", "WEBP")],
)
def test_any_colour_mode_comes_out_as_an_rgb_jpeg(evidence, run, mode, format):
    upload = io.BytesIO()
    Image.new("RGB", (120, 80), (30, 90, 200)).convert(mode).save(upload, format=format)
    check = run(evidence.check(attach(upload.getvalue())))
    assert check.accepted, check.reason
    with Image.open(io.BytesIO(check.data)) as stored:
        assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (120, 80))


def test_transparent_areas_are_shown_on_white(evidence, run):
    upload = io.BytesIO()
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(upload, format="PNG")
    check = run(evidence.check(attach(upload.getvalue(), "image/png")))
    with Image.open(io.BytesIO(check.data)) as stored:
        assert min(stored.getpixel((20, 20))) > 245


def test_a_heic_photo_from_a_phone_is_accepted_and_cleaned(evidence, run):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretPhone"
    exif[ExifTags.Base.Orientation] = 6  # turned once (libheif applies it on decode), never twice
    upload = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (320, 240), (10, 200, 10))).save(
        upload, format="HEIF", exif=exif.tobytes()
    )
    assert upload.getvalue()[4:12] == b"ftypheic" and b"SecretPhone" in upload.getvalue()
    check = run(evidence.check(attach(upload.getvalue(), "image/heic")))
    assert check.accepted, check.reason
    assert b"SecretPhone" not in check.data
    with Image.open(io.BytesIO(check.data)) as stored:
        assert (stored.format, stored.size) == ("JPEG", (240, 320))
        r, g, b = stored.getpixel((120, 160))
        assert g > 150 and r < 60 and b < 60


# -- bounded decoding -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forty_megapixels(tmp_path_factory) -> Path:
    """A 7728 × 5152 (39.8 MP) JPEG, as a 40 MP phone camera takes: built once for the module."""
    width, height = 7728, 5152
    shade = Image.linear_gradient("L").resize((width, height))
    out = io.BytesIO()
    Image.merge("RGB", (shade, shade.transpose(Image.Transpose.ROTATE_180), Image.new("L", (width, height), 90))).save(
        out, format="JPEG", quality=90
    )
    path = tmp_path_factory.mktemp("big") / "40mp.jpg"
    path.write_bytes(out.getvalue())
    return path


def test_a_40_megapixel_photo_is_kept_at_2048_pixels_on_its_long_side(forty_megapixels, tmp_path, run):
    data = forty_megapixels.read_bytes()
    evidence = EvidenceStore(tmp_path, max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
    check = run(evidence.check(attach(data)))
    assert check.accepted, check.reason
    with Image.open(io.BytesIO(check.data)) as stored:
        assert stored.size == (2048, 1365)


# Run in a fresh interpreter: its peak resident memory is this work's and nothing else's.
_EIGHT_AT_ONCE = """
import asyncio, resource, sys
from pathlib import Path
from bot.evidence import EvidenceStore
from bot.messages import Attachment

data = Path(sys.argv[1]).read_bytes()
store = EvidenceStore(Path(sys.argv[2]), max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
photo = Attachment("photo", data, "image/jpeg", len(data), "big.jpg")

async def eight():
    return await asyncio.gather(*[store.check(photo) for _ in range(8)])

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
checks = asyncio.run(eight())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(sum(c.accepted for c in checks), (after - before) // 1024)
"""


def test_eight_40_megapixel_photos_at_once_take_bounded_memory(forty_megapixels, tmp_path):
    """Decoded in full, one such photo alone took some 450 MB and eight at once 2.6 GB. At reduced
    scale the eight take some 400 MB when all decode at once, and under 200 MB two at a time: the
    limit here, 300 MB, fails either way (and is less than one full-size decode). Measured: ~140 MB."""
    done = subprocess.run(
        [sys.executable, "-c", _EIGHT_AT_ONCE, str(forty_megapixels), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    accepted, peak_growth_mb = map(int, done.stdout.split())
    assert accepted == 8
    assert peak_growth_mb < 300, f"peak memory grew by {peak_growth_mb} MB"


# -- private files, and they expire ------------------------------------------------------------------


def test_kept_photos_and_their_folder_are_private_whatever_the_umask(tmp_path, run):
    folder = tmp_path / "evidence"
    evidence = EvidenceStore(folder, max_bytes=1_000_000, max_pixels=4_000_000)
    previous = os.umask(0)  # the widest umask: nothing in it keeps files private
    try:
        check = run(evidence.check(attach(jpeg())))
        run(evidence.keep(check))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / check.ref).stat().st_mode) == 0o600


def test_a_folder_made_wider_before_is_made_private_again(tmp_path, run):
    folder = tmp_path / "evidence"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    evidence = EvidenceStore(folder, max_bytes=1_000_000, max_pixels=4_000_000)
    run(evidence.keep(run(evidence.check(attach(jpeg())))))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_photos_older_than_the_ticket_lifetime_expire(evidence, tmp_path, run):
    checks = [run(evidence.check(attach(jpeg()))) for _ in range(3)]
    for check in checks:
        run(evidence.keep(check))
    day = 24 * 3600
    old, older, fresh = (tmp_path / check.ref for check in checks)
    os.utime(old, (time.time() - 31 * day,) * 2)
    os.utime(older, (time.time() - 90 * day,) * 2)
    (tmp_path / "notes.txt").write_text("not a photo")
    os.utime(tmp_path / "notes.txt", (time.time() - 90 * day,) * 2)

    assert run(evidence.expire(30 * day)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, "notes.txt"])
    assert run(evidence.expire(30 * day)) == 0


def test_expiring_before_any_photo_was_kept_deletes_nothing(tmp_path, run):
    evidence = EvidenceStore(tmp_path / "never-made", max_bytes=1_000_000, max_pixels=4_000_000)
    assert run(evidence.expire(0)) == 0


def test_the_clock_deletes_photos_older_than_their_tickets(make_manager, run, tmp_path):
    import os
    import time

    manager = make_manager()
    run(manager.handle(message(attachments=(photo(),))))
    kept = list((tmp_path / "evidence").glob("*.jpg"))
    assert len(kept) == 1
    old = time.time() - manager.store.ttl_seconds - 60
    os.utime(kept[0], (old, old))
    run(manager.tick())
    assert list((tmp_path / "evidence").glob("*.jpg")) == []
