"""Evidence photos: decoded to validate, capped, re-encoded without metadata, stored under random names."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.evidence import EvidenceStore
from bot.messages import Attachment
from tests.factories import jpeg


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
