"""The built-in talking head through the gateway, against a floor measured in the same run.

Starts the mesh (`vidsynth up`, built-in backends: Piper, the face mesh, visemes, ffmpeg),
uploads the bundled samples and times a job with a ~60 s script at 512x512 from StartJob to
the downloaded MP4, after one warm-up job (the Piper worker stays loaded between jobs, as in
a running service). The floor is the least any such job must do, measured here and now: the
same script spoken by the (warm) Piper worker alone, plus ffmpeg encoding a still image of the
same length at the same size with the same encoder settings. The in-process chain
(`render_talking_head`) is timed too. Then the voices' quality by numbers: DNSMOS (speechmos,
which bundles its ONNX models) of the built-in voice and of espeak-ng on the same text, and the
F0 each reached, for the bundled sample and a high (about 210 Hz) voice.

    .venv/bin/python -m bench.pipeline [--rounds 1]

Target: the gateway job at >= 4x real time (60 s of speech in <= 15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from libs.common.log import configure_logging
from services.stage_runner.media.chunking import split_script
from services.stage_runner.media.face import crop_face
from services.stage_runner.media.ffmpeg import H264_ENCODE, decode_audio, duration_of, probe, run_ffmpeg
from services.stage_runner.media.neural_voice import synthesize_matched
from services.stage_runner.media.speech_engine import SpeechEngine
from services.stage_runner.media.talking_head import render_talking_head
from services.stage_runner.media.voice_analysis import ANALYSIS_RATE, median_f0
from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "samples" / "portrait.jpg"
VOICE = ROOT / "samples" / "voice.wav"
SIZE, FPS = 512, 25
TARGET_REAL_TIME = 4.0
SCRIPT_60S = (
    "Welcome to this short presentation about our new product. Today, I want to show you how it works, "
    "why it matters, and what you can do with it. First, let me explain the basic idea. We take a single "
    "photo, a short voice sample, and a written script. Then the system speaks the script and animates the "
    "face, so that it looks like the person is talking. Please bring your questions, because we will have "
    "plenty of time at the end. Maybe you will be surprised by how simple it is. "
) * 2
DNSMOS_TEXT = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, "
    "and the shells she sells are surely seashells. Please call me back before noon."
)


async def ready_session(client: GatewayClient) -> str:
    session_id = (await client.create_session("bench"))["session_id"]
    await client.upload(session_id, "face", FACE)
    await client.upload(session_id, "voice", VOICE)
    return session_id


async def through_gateway(client: GatewayClient, script: str, out: Path) -> tuple[float, float]:
    """(wall seconds from StartJob to the downloaded MP4, seconds of speech)."""
    session_id = await ready_session(client)
    started = time.perf_counter()
    job = await client.start_job(session_id, {"script_text": script, "options": {"size": SIZE}})
    end = await client.wait_for_job(session_id, job["job_id"])
    if end["type"] != "job.completed":
        raise RuntimeError(f"job failed: {end}")
    await client.download(job["job_id"], "video", out)
    wall = time.perf_counter() - started
    return wall, duration_of(await probe(out))


async def floor(engine: SpeechEngine, script: str, work: Path) -> tuple[float, float, float]:
    """(TTS seconds, still-image encode seconds, speech seconds) for `script`."""
    started = time.perf_counter()
    speech_seconds = 0.0
    for index, chunk in enumerate(split_script(script)):
        spoken = await engine.speak(chunk, work / f"floor-{index}.wav", 1.0)
        speech_seconds += spoken.samples / spoken.sample_rate
    tts = time.perf_counter() - started
    await crop_face(FACE, work / "floor-face.png", SIZE)
    started = time.perf_counter()
    await run_ffmpeg(
        [
            *(
                "-loop",
                "1",
                "-framerate",
                str(FPS),
                "-t",
                f"{speech_seconds:.3f}",
                "-i",
                work / "floor-face.png",
            ),
            *H264_ENCODE,
            *("-pix_fmt", "yuv420p"),
            *("-movflags", "+faststart", "-f", "mp4", work / "floor.mp4"),
        ],
        expected_seconds=speech_seconds,
    )
    return tts, time.perf_counter() - started, speech_seconds


def dnsmos(samples_16k: np.ndarray) -> tuple[float, float]:
    """(OVRL, SIG) of DNSMOS for 16 kHz mono speech."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from speechmos import dnsmos as model

        peak = float(np.abs(samples_16k).max()) or 1.0
        scores = model.run((samples_16k / peak * 0.9).astype(np.float32), 16_000)
    return float(scores["ovrl_mos"]), float(scores["sig_mos"])


def high_voice_sample(out: Path) -> Path:
    """A high (about 210 Hz) voice: espeak-ng's female variant, as the media tests make it."""
    subprocess.run(
        ["espeak-ng", "-v", "en-us+f3", "-p", "60", "-w", str(out), "Hello, this is a higher voice sample."],
        check=True,
    )
    return out


async def voice_scores(engine: SpeechEngine, work: Path) -> None:
    print("\nvoice quality by numbers (same text; DNSMOS OVRL / SIG, median F0 reached):")
    for label, sample in (("bundled sample", VOICE), ("high voice", high_voice_sample(work / "high.wav"))):
        target = median_f0(await decode_audio(sample, ANALYSIS_RATE))
        for engine_name, used in (("built-in", engine), ("espeak-ng", None)):
            out = work / f"dnsmos-{label.replace(' ', '-')}-{engine_name}.wav"
            speech = await synthesize_matched(DNSMOS_TEXT, sample, out, used)
            audio = await decode_audio(out, 16_000)
            ovrl, sig = dnsmos(audio)
            reached = median_f0(await decode_audio(out, ANALYSIS_RATE))
            print(
                f"  {label:<15} {engine_name:<10} ({speech.engine:<9}) OVRL {ovrl:.2f}  SIG {sig:.2f}  "
                f"F0 {reached:5.0f} Hz (sample {target:.0f} Hz)"
            )


async def run(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-") as tmp:
        work = Path(tmp)
        engine = SpeechEngine()
        # One user runs the four concurrent jobs: the pipeline is measured, not the per-user shares.
        mesh = MeshProcess(
            work / "var",
            extra_env={
                "VIDSYNTH_PROCESSING_MODE": "auto",
                "VIDSYNTH_STAGE_RUNNER_MAX_RUNNING_JOBS_PER_USER": "4",
            },
        )
        try:
            mesh.wait_up()
            async with GatewayClient(mesh.url, API_KEYS["alice"], timeout=300) as client:
                await engine.reference(work)  # warm, as the service's worker is after its first job
                await through_gateway(client, "Warming up the speech worker.", work / "warm.mp4")
                floors, gateways, directs, speech, job_speech = [], [], [], 0.0, 0.0
                for i in range(rounds):
                    tts, still, speech = await floor(engine, SCRIPT_60S, work)
                    floors.append((tts, still))
                    wall, job_speech = await through_gateway(client, SCRIPT_60S, work / f"job-{i}.mp4")
                    gateways.append(wall)
                    started = time.perf_counter()
                    await render_talking_head(
                        FACE, VOICE, SCRIPT_60S, work / f"direct-{i}", engine=engine, size=SIZE
                    )
                    directs.append(time.perf_counter() - started)
            tts = statistics.median(f[0] for f in floors)
            still = statistics.median(f[1] for f in floors)
            gateway, direct = statistics.median(gateways), statistics.median(directs)
            real_time = job_speech / gateway
            print(
                f"60 s script at {SIZE}x{SIZE}, {FPS} fps ({speech:.1f} s of Piper speech at length scale 1):"
            )
            print(f"  floor: TTS alone {tts:.2f} s + still-image encode {still:.2f} s = {tts + still:.2f} s")
            print(
                f"  in-process chain (render_talking_head): {direct:.2f} s = {direct / (tts + still):.2f}x the floor"
            )
            print(
                f"  through the gateway: {gateway:.2f} s = {gateway / (tts + still):.2f}x the floor, "
                f"{real_time:.1f}x real time for its {job_speech:.1f} s of speech "
                f"({'ok' if real_time >= TARGET_REAL_TIME else 'under'} "
                f"the {TARGET_REAL_TIME:g}x target)"
            )
            await voice_scores(engine, work)
        finally:
            await engine.close()
            mesh.stop()


def main() -> None:
    configure_logging("bench", "warning")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
