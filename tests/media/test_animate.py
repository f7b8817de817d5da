from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.media.animate import animate, expression_scale_for, frames_for
from services.stage_runner.media.ffmpeg import probe, stream_of
from tests.media.conftest import read_gray_frames, read_wav


def _mouth_motion(frames: np.ndarray, reference: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    region = frames[:, y : y + h, x : x + w].astype(np.float32)
    return np.abs(region - reference[y : y + h, x : x + w].astype(np.float32)).mean(axis=(1, 2))


async def test_animation_is_h264_with_one_frame_per_25th_of_a_second(talking_head, speech_with_pauses):
    samples, rate = read_wav(speech_with_pauses[0])
    expected_frames = frames_for(samples.size / rate, 25)
    assert talking_head.frames == expected_frames
    video = stream_of(await probe(talking_head.path), "video")
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert (video["width"], video["height"]) == (256, 256)
    assert int(video["nb_read_packets"]) == expected_frames
    assert video["r_frame_rate"] == "25/1"


def test_mouth_moves_clearly_more_in_loud_frames_than_in_silent_ones(
    talking_head, speech_with_pauses, face_crop
):
    path, spans = speech_with_pauses
    samples, rate = read_wav(path)
    frames = read_gray_frames(talking_head.path)
    reference = cv2.cvtColor(cv2.imread(str(face_crop)), cv2.COLOR_BGR2GRAY)
    motion = _mouth_motion(frames, reference, talking_head.mouth_box)
    hop = rate // 25
    level = np.array([np.sqrt(np.mean(samples[i * hop : (i + 1) * hop] ** 2)) for i in range(len(frames))])
    loud = level > 0.5 * level.max()
    # Silent: inside a pause, from 0.3 s after the speech stops (the jaw takes a few frames to close).
    t = np.arange(len(frames)) / 25
    silent = np.ones(len(frames), dtype=bool)
    for start, end in spans:
        silent &= ~((t >= start - 0.04) & (t < end + 0.3))
    assert loud.sum() >= 10 and silent.sum() >= 20
    loud_motion, silent_motion = float(motion[loud].mean()), float(motion[silent].mean())
    print(f"mouth motion: loud {loud_motion:.1f}, silent {silent_motion:.1f} grey levels")
    assert loud_motion > 4 * silent_motion, (loud_motion, silent_motion)
    assert loud_motion > 8.0  # grey levels: a clearly visible opening, not encoder noise


async def test_expression_scale_changes_how_far_the_mouth_opens(face_crop, speech_with_pauses, tmp_path):
    subdued = await animate(face_crop, speech_with_pauses[0], tmp_path / "calm.mp4", expression_scale=0.6)
    lively = await animate(face_crop, speech_with_pauses[0], tmp_path / "lively.mp4", expression_scale=1.5)
    reference = cv2.cvtColor(cv2.imread(str(face_crop)), cv2.COLOR_BGR2GRAY)
    calm_motion = _mouth_motion(read_gray_frames(subdued.path), reference, subdued.mouth_box).max()
    lively_motion = _mouth_motion(read_gray_frames(lively.path), reference, lively.mouth_box).max()
    assert lively_motion > 1.3 * calm_motion


def test_expression_scale_for_emotions_and_tones():
    assert expression_scale_for("neutral", "") == 1.0
    assert expression_scale_for("unknown", "whatever") == 1.0
    assert expression_scale_for("Excited", "energetic") > expression_scale_for("happy", "") > 1.0
    assert expression_scale_for("sad", "formal") < expression_scale_for("calm", "") < 1.0
    assert expression_scale_for("tired", "soft") >= 0.5 and expression_scale_for("excited", "dramatic") <= 1.6


async def test_progress_counts_rendered_frames(face_crop, speech_with_pauses, tmp_path):
    seen: list[tuple[float, str]] = []

    async def on_progress(percent: float, message: str) -> None:
        seen.append((percent, message))

    result = await animate(face_crop, speech_with_pauses[0], tmp_path / "a.mp4", on_progress=on_progress)
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert seen[-1][1] == f"rendered frame {result.frames} of {result.frames}"
    assert len(seen) >= result.frames // 25


async def test_unreadable_face_or_audio_fails_the_stage(face_crop, speech_with_pauses, tmp_path):
    broken_png = tmp_path / "broken.png"
    broken_png.write_bytes(b"not a png")
    broken_wav = tmp_path / "broken.wav"
    broken_wav.write_bytes(b"RIFF....WAVEfmt junk")
    for face, audio in ((broken_png, speech_with_pauses[0]), (face_crop, broken_wav)):
        with pytest.raises(VidsynthError) as caught:
            await animate(face, audio, tmp_path / "out.mp4")
        assert caught.value.code == "STAGE_FAILED"
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".*"))


def test_envelope_is_closed_in_silence_and_blinks_come_every_few_seconds():
    from services.stage_runner.media.face_rig import mouth_envelope, poses_for

    rate, fps = 16000, 25
    t = np.arange(rate * 10) / rate
    # 0.5 s bursts of a voiced tone every 2 s, silence in between.
    speech = (np.sin(2 * np.pi * 150 * t) * 0.3 * ((t % 2.0) < 0.5)).astype(np.float32)
    opening = mouth_envelope(speech, rate, fps, 250)
    frame_t = np.arange(250) / fps
    in_burst = (frame_t % 2.0) < 0.5
    settled_silence = (frame_t % 2.0) > 0.75
    assert opening[in_burst & ((frame_t % 2.0) > 0.1)].min() > 0.8
    assert opening[settled_silence].max() == 0.0
    assert mouth_envelope(np.zeros(rate, dtype=np.float32), rate, fps, 25).max() == 0.0
    poses = poses_for(opening, fps, expression_scale=1.0)
    blink_starts = sum(1 for a, b in itertools.pairwise(poses) if a.blink == 0 < b.blink)
    assert 2 <= blink_starts <= 4
    assert max(abs(p.angle_degrees) for p in poses) < 3.0  # subtle head motion
