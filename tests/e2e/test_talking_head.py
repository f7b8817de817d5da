"""The main job end to end through the gateway: a real talking-head MP4 from the bundled
photo and voice sample, with the built-in backends (Piper, the face mesh, visemes, ffmpeg),
its captions downloadable as WebVTT and, on request, burned into the picture."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient, GatewayError

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"
FPS = 25
# Two sentences with a long pause between them, so the video has silent stretches.
SCRIPT = "Hello there, this is vidsynth speaking. ... ... ... Every frame was drawn on this machine."


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    mesh = MeshProcess(tmp_path_factory.mktemp("e2e") / "var", extra_env={"VIDSYNTH_PROCESSING_MODE": "auto"})
    mesh.wait_up()
    yield mesh
    mesh.stop()


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def gray_frames(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width)


def loudness_per_frame(path: Path, frames: int) -> np.ndarray:
    rate = 16000
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
        check=True,
    ).stdout
    samples = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768
    hop = rate // FPS
    return np.array([np.sqrt(np.mean(samples[i * hop : (i + 1) * hop] ** 2) + 1e-12) for i in range(frames)])


async def render(mesh: MeshProcess, tmp_path: Path, body: dict) -> tuple[Path, Path, dict]:
    async with GatewayClient(mesh.url, API_KEYS["alice"]) as client:
        session_id = (await client.create_session("e2e"))["session_id"]
        await client.upload(session_id, "face", FACE)
        await client.upload(session_id, "voice", VOICE)
        job = await client.start_job(session_id, body)
        messages = []
        async for event in client.events(session_id, job_id=job["job_id"]):
            messages.append((event.get("stage"), event.get("message", "")))
            end = event
        assert end["type"] == "job.completed", end
        video = await client.download(job["job_id"], "video", tmp_path / "video.mp4")
        audio = await client.download(job["job_id"], "audio", tmp_path / "speech.wav")
        captions = await client.http.get(f"/v1/jobs/{job['job_id']}/outputs/captions")
        assert captions.status_code == 200 and captions.headers["content-type"].startswith("text/vtt")
        (tmp_path / "captions.vtt").write_bytes(captions.content)
        result = await client.get_job(job["job_id"])
        result["messages"] = messages
        return video, audio, result


async def test_talking_head_mp4_through_the_gateway(mesh, tmp_path) -> None:
    video, audio, job = await render(
        mesh, tmp_path, {"script_text": SCRIPT, "emotion": "happy", "options": {"burn_captions": True}}
    )
    assert {o["name"] for o in job["outputs"]} >= {"video", "thumbnail", "audio", "script", "captions"}
    backends = {s["stage"]: s["backend"] for s in job["stages"]}
    assert (backends["voice"], backends["face"], backends["animate"], backends["assemble"]) == (
        "piper",
        "face-mesh",
        "builtin-animate",
        "ffmpeg-assemble",
    )
    said = " | ".join(message for _, message in job["messages"])
    assert "Piper en_US-joe-medium" in said and "not cloning" in said, said
    assert "face mesh: 478 landmarks, cropped to 512x512" in said, said
    assert "mouth from phoneme visemes" in said, said
    vtt = (tmp_path / "captions.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "Every frame was drawn on this machine." in vtt
    assert not [b for b in backends.values() if b.startswith("simulated-")], backends

    info = ffprobe(video)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["pix_fmt"] == "yuv420p"
    assert streams["audio"]["codec_name"] == "aac"
    audio_seconds = float(ffprobe(audio)["format"]["duration"])
    video_seconds = float(streams["video"]["duration"])
    assert abs(video_seconds - audio_seconds) <= 0.1
    assert abs(int(streams["video"]["nb_read_frames"]) - round(audio_seconds * FPS)) <= 1

    width, height = streams["video"]["width"], streams["video"]["height"]
    assert (width, height) == (512, 512)
    frames = gray_frames(video, width, height)
    # Burned-in captions: the band under the chin changes with the cue on screen.
    band = frames[:, int(0.86 * height) :, :].astype(np.float32)
    first_cue, last_cue = band[int(0.5 * FPS)], band[-int(0.5 * FPS)]
    assert float(np.abs(first_cue - last_cue).mean()) > 4.0
    level = loudness_per_frame(audio, len(frames))
    loud = level > 0.5 * np.percentile(level, 95)
    silent = level < 0.02 * np.percentile(level, 95)
    assert loud.sum() >= 10 and silent.sum() >= 10, (loud.sum(), silent.sum())
    # The mouth sits in the lower middle of the face crop; compare it with its look in silence.
    # (Silent frames still move with the head's sway, which at 512x512 shows more texture.)
    mouth = frames[:, int(0.55 * height) : int(0.8 * height), int(0.3 * width) : int(0.7 * width)].astype(
        np.float32
    )
    closed = np.median(mouth[silent], axis=0)
    motion = np.abs(mouth - closed).mean(axis=(1, 2))
    loud_motion, silent_motion = float(motion[loud].mean()), float(motion[silent].mean())
    print(f"mouth motion through the gateway: loud {loud_motion:.1f}, silent {silent_motion:.1f} grey levels")
    assert loud_motion > 1.5 * silent_motion and loud_motion > 5.0
    # The open mouth shows its dark inside when loud; in silence the lips rest closed.
    dark = (mouth < 60).mean(axis=(1, 2))
    print(f"dark mouth pixels: loud {dark[loud].mean():.4f}, silent {dark[silent].mean():.4f}")
    assert dark[loud].mean() > 0.01 and dark[loud].mean() > 5 * dark[silent].mean()


async def test_refused_inputs_never_start_a_job(mesh, tmp_path) -> None:
    async with GatewayClient(mesh.url, API_KEYS["alice"]) as client:
        session_id = (await client.create_session("e2e-refused"))["session_id"]
        await client.upload(session_id, "face", FACE)
        with pytest.raises(GatewayError) as missing_voice:
            await client.start_job(session_id, {"script_text": "Hello."})
        assert missing_voice.value.code == "INVALID_SESSION_STATE"
        with pytest.raises(GatewayError) as swapped:
            await client.upload(session_id, "voice", FACE)
        assert swapped.value.code in {"FILE_TYPE_NOT_ALLOWED", "FILE_CONTENT_MISMATCH"}
