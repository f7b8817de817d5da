"""The built-in chain with its real models: Piper in its worker, the face mesh, the mesh rig.

Measured on what comes out: the speech's F0 (our own YIN tracker), the captions against the
script and the speech's end, and the rendered frames (the face mesh run again on them: how far
apart the inner lips are at every bilabial and on open vowels; the rest of the face against the
photo after undoing the head motion).
"""

# ruff: noqa: RUF001 (IPA phonemes)

from __future__ import annotations

import asyncio
import itertools
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.stage_runner.media import face_mesh
from services.stage_runner.media.animate import animate
from services.stage_runner.media.captions import write_captions
from services.stage_runner.media.face import crop_face
from services.stage_runner.media.ffmpeg import decode_audio
from services.stage_runner.media.neural_voice import synthesize_matched
from services.stage_runner.media.speech_engine import SpeechEngine
from services.stage_runner.media.voice_analysis import ANALYSIS_RATE, pitch_track

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PORTRAIT = ROOT / "samples" / "portrait.jpg"
SAMPLE = ROOT / "samples" / "voice.wav"
SIZE, FPS = 512, 25
SCRIPT = (
    "Bob bought a big map. Papa, pass me the bomb, please! "
    "Ah, father, what a large hot pot. My mom and Pam probably park far apart."
)
OPEN_VOWELS = ("ɑ", "a", "æ", "aɪ", "aʊ")


def decode_frames(video: Path) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, SIZE, SIZE, 3)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return asyncio.run(render(tmp_path_factory.mktemp("mesh-talking-head")))


async def render(work: Path) -> dict:
    engine = SpeechEngine()
    try:
        speech = await synthesize_matched(SCRIPT, SAMPLE, work / "speech.wav", engine)
        first_pid = engine.worker.pid
        again = await synthesize_matched("Hello again.", SAMPLE, work / "again.wav", engine)
        assert engine.worker.pid == first_pid and engine.worker.starts == 1  # kept loaded
    finally:
        await engine.close()
    assert engine.worker.pid is None
    alignment_json = work / "alignment.json"
    speech.alignment.write(alignment_json)
    box = await crop_face(PORTRAIT, work / "face.png", SIZE, work / "landmarks.json")
    result = await animate(
        work / "face.png",
        speech.path,
        work / "video.mp4",
        fps=FPS,
        landmarks_json=work / "landmarks.json",
        alignment_json=alignment_json,
    )
    return {
        "work": work,
        "speech": speech,
        "again": again,
        "box": box,
        "animation": result,
        "frames": decode_frames(result.path),
        "photo": cv2.imread(str(work / "face.png")),
    }


def test_piper_speaks_with_alignments_and_says_what_it_is(rendered):
    speech = rendered["speech"]
    assert speech.engine == "piper" and speech.alignment.source == "piper"
    assert "Piper en_US-joe-medium" in speech.description and "not cloning" in speech.description
    phones = speech.alignment.phones
    assert phones[-1].end == pytest.approx(speech.duration_seconds, abs=0.02)
    assert all(b.start == pytest.approx(a.end) for a, b in itertools.pairwise(phones))
    assert [w.text for w in speech.alignment.words] == SCRIPT.split()


async def test_the_speech_is_moved_to_the_samples_pitch(rendered):
    sample_f0 = float(np.median(pitch_track(await decode_audio(SAMPLE, ANALYSIS_RATE))))
    spoken_f0 = float(np.median(pitch_track(await decode_audio(rendered["speech"].path, ANALYSIS_RATE))))
    assert spoken_f0 == pytest.approx(sample_f0, rel=0.12), (spoken_f0, sample_f0)


def test_captions_cover_the_script_and_end_with_the_speech(rendered):
    speech = rendered["speech"]
    files = write_captions(speech.alignment.words, speech.duration_seconds, rendered["work"])
    vtt = files["captions"].read_text()
    blocks = [b.split("\n") for b in vtt.strip().split("\n\n")[1:]]
    texts = [" ".join(block[2:]) for block in blocks]
    assert " ".join(texts) == SCRIPT
    assert texts[0] == "Bob bought a big map."
    last_end = blocks[-1][1].split(" --> ")[1]
    _, minutes, seconds = last_end.split(":")
    assert float(seconds) + 60 * int(minutes) == pytest.approx(speech.duration_seconds, abs=0.01)


def inner_lip_gap(frame: np.ndarray) -> float:
    """Inner-lip opening over mouth width, as the face mesh sees the rendered frame."""
    faces = face_mesh.landmarks(frame)
    assert faces, "the face mesh lost the face in a rendered frame"
    points = faces[0]
    width = float(np.linalg.norm(points[291] - points[61]))
    return float(np.linalg.norm(points[14] - points[13])) / width


def test_lips_are_closed_at_every_bilabial_and_open_on_open_vowels(rendered):
    frames = rendered["frames"]
    assert rendered["animation"].rig == "mesh" and rendered["animation"].mouth_driver == "visemes"
    closed, opened = [], []
    for phone in rendered["speech"].alignment.phones:
        index = min(len(frames) - 1, int((phone.start + phone.end) / 2 * FPS))
        core = phone.phoneme.strip("ˈˌː")
        if core in ("p", "b", "m"):
            closed.append((phone.phoneme, phone.start, inner_lip_gap(frames[index])))
        elif core in OPEN_VOWELS and phone.end - phone.start >= 0.05:
            # Piper's durations vary from run to run (its noise is not seedable), and a short
            # vowel between two bilabials ("map") opens only briefly: take its widest frame.
            span = range(int(phone.start * FPS), min(len(frames), int(phone.end * FPS) + 1))
            opened.append((phone.phoneme, phone.start, max(inner_lip_gap(frames[i]) for i in span)))
    assert len(closed) >= 12 and len(opened) >= 3, (closed, opened)
    rest_gap = inner_lip_gap(rendered["photo"])  # the photo smiles with its teeth showing
    print(
        f"rest {rest_gap:.3f}; bilabials {[round(g, 3) for *_, g in closed]}; open {[round(g, 3) for *_, g in opened]}"
    )
    assert max(g for *_, g in closed) < 0.5 * rest_gap, closed
    assert all(g < 0.06 for *_, g in closed), closed
    assert np.median([g for *_, g in opened]) > 0.15, opened
    assert min(g for *_, g in opened) > 10 * max(g for *_, g in closed), (opened, closed)


def test_outside_the_mouth_and_jaw_the_frames_stay_the_photo(rendered):
    photo = cv2.cvtColor(rendered["photo"], cv2.COLOR_BGR2GRAY).astype(np.float32)
    points = face_mesh.landmarks(rendered["photo"])[0]
    # Mouth and jaw: the face below the nose, and the neck under the chin that the jaw moves over.
    lower = points[:468][points[:468, 1] > points[2, 1]]
    face_height = float(points[152, 1] - points[9, 1])
    jaw = np.concatenate([lower, lower + np.array([0.0, 0.45 * face_height], np.float32)])
    moving = np.zeros(photo.shape, np.uint8)
    cv2.fillConvexPoly(moving, cv2.convexHull(np.round(jaw).astype(np.int32)), 255)
    for eye in ((33, 133, 159, 145), (362, 263, 386, 374)):  # blinks
        corners = np.round(points[list(eye)]).astype(np.int32)
        cv2.fillConvexPoly(moving, cv2.convexHull(corners), 255)
    keep = cv2.dilate(moving, np.ones((3, 3), np.uint8), iterations=14) == 0
    differences = []
    for frame in rendered["frames"][:: max(1, len(rendered["frames"]) // 12)]:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
        warp = np.eye(2, 3, dtype=np.float32)
        _, warp = cv2.findTransformECC(
            photo,
            gray,
            warp,
            cv2.MOTION_EUCLIDEAN,
            (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5),
            keep.astype(np.uint8),
            5,
        )
        aligned = cv2.warpAffine(gray, warp, photo.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        inner = keep.copy()
        inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False  # motion's edges
        # Blurred a little: two resamplings (the head motion, its undoing) soften fine texture.
        difference = np.abs(cv2.GaussianBlur(aligned, (0, 0), 1.5) - cv2.GaussianBlur(photo, (0, 0), 1.5))
        differences.append(float(difference[inner].mean()))
    print(f"mean grey-level difference outside the mouth and jaw: {[round(d, 2) for d in differences]}")
    assert max(differences) < 3.0, differences
