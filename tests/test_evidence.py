"""Evidence photos: decoded to validate, capped, re-encoded without metadata, stored under random names."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.evidence import EvidenceStore
from bot.messages import Attachment
from tests.factories import jpeg, message, photo


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
