from __future__ import annotations

import cv2
import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.media.face import crop_face, detect_faces


async def test_crop_face_writes_a_square_crop_centred_on_the_one_face(face_photo, tmp_path):
    out = tmp_path / "face.png"
    box = await crop_face(face_photo, out, size=256)
    crop = cv2.imread(str(out))
    assert crop.shape == (256, 256, 3)
    assert (box.image_width, box.image_height) == (320, 400)
    # The drawn face is centred at (160, 200); the detected box must contain that centre.
    assert box.x < 160 < box.x + box.width and box.y < 200 < box.y + box.height
    # The crop still shows exactly one face, filling a good part of the frame.
    faces = detect_faces(crop)
    assert len(faces) == 1
    assert 0.35 < faces[0][2] / 256 < 0.8
    assert not list(tmp_path.glob(".*partial*"))


async def test_a_face_near_the_edge_is_padded_not_shifted(face_photo, tmp_path):
    image = cv2.imread(str(face_photo))
    cropped_source = tmp_path / "edge.png"
    cv2.imwrite(str(cropped_source), image[:, 40:])  # face now near the left edge
    box = await crop_face(cropped_source, tmp_path / "out.png", size=128)
    assert box.crop_x < 0 or box.crop_y < 0 or box.crop_x + box.crop_size > 280
    assert cv2.imread(str(tmp_path / "out.png")).shape == (128, 128, 3)


@pytest.mark.parametrize(
    ("photo", "code"),
    [("no_face_photo", "NO_FACE_DETECTED"), ("two_faces_photo", "MULTIPLE_FACES_DETECTED")],
)
async def test_photos_without_exactly_one_face_are_refused(photo, code, request, tmp_path):
    out = tmp_path / "face.png"
    with pytest.raises(VidsynthError) as caught:
        await crop_face(request.getfixturevalue(photo), out)
    assert caught.value.code == code
    assert not out.exists()


async def test_an_unreadable_photo_fails_the_stage(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(VidsynthError) as caught:
        await crop_face(broken, tmp_path / "out.png")
    assert caught.value.code == "STAGE_FAILED"


async def test_the_bundled_portrait_has_one_face_and_a_rig_with_both_eyes(tmp_path):
    from pathlib import Path

    import numpy as np

    from services.stage_runner.media.face_rig import FaceRig, Pose, render

    portrait = Path(__file__).resolve().parents[2] / "samples" / "portrait.jpg"
    out = tmp_path / "face.png"
    box = await crop_face(portrait, out, size=256)
    assert (box.image_width, box.image_height) == (512, 512)
    rig = FaceRig.from_image(cv2.imread(str(out)))
    left, right = sorted(rig.eyes, key=lambda e: e.centre[0])
    assert left.centre[0] < rig.mouth_x < right.centre[0]
    assert max(left.centre[1], right.centre[1]) < rig.mouth_y
    # A blink changes the eyes and nothing near the mouth; an open mouth the reverse.
    still = render(rig, Pose(0, 0, 0, 0, 0)).astype(int)
    blink = render(rig, Pose(0, 1, 0, 0, 0)).astype(int)
    x, y, w, h = rig.mouth_box
    eye_y = int(left.centre[1])
    eye_rows = slice(eye_y - 6, eye_y + 6)
    assert np.abs(blink - still)[eye_rows].mean() > 5 * max(0.05, np.abs(blink - still)[y : y + h].mean())
    talking = render(rig, Pose(1, 0, 0, 0, 0)).astype(int)
    assert np.abs(talking - still)[y : y + h, x : x + w].mean() > 10
    assert np.abs(talking - still)[eye_rows].mean() < 0.5
