from __future__ import annotations

import pytest

from services.stage_runner.media.animate import frames_for
from services.stage_runner.media.ffmpeg import duration_of, probe, stream_of
from services.stage_runner.media.talking_head import render_talking_head


async def test_photo_voice_and_script_become_a_verified_talking_head_mp4(
    face_photo, high_voice_sample, tmp_path
):
    """Without the Piper worker (engine None): espeak-ng speaks, and with no phone alignments the
    mesh rig's mouth follows the loudness envelope."""
    seen: dict[str, list[float]] = {}

    async def on_progress(stage: str, percent: float, message: str) -> None:
        seen.setdefault(stage, []).append(percent)

    out_dir = tmp_path / "output"
    result = await render_talking_head(
        face_photo,
        high_voice_sample,
        "Hello! This is a short test. The whole chain runs here.",
        out_dir,
        size=128,
        emotion="happy",
        upscale_factor=2,
        on_progress=on_progress,
    )
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "audio.wav",
        "captions.srt",
        "captions.vtt",
        "thumbnail.jpg",
        "video.mp4",
    ]
    assert result.speech is not None and result.speech.engine == "espeak-ng"
    assert "not cloning" in result.speech.description
    assert result.animation is not None
    assert (result.animation.rig, result.animation.mouth_driver) == ("mesh", "loudness")
    vtt = (out_dir / "captions.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "The whole chain runs here." in vtt
    info = await probe(result.outputs["video"])
    video, audio = stream_of(info, "video"), stream_of(info, "audio")
    assert (video["codec_name"], audio["codec_name"]) == ("h264", "aac")
    assert (video["width"], video["height"]) == (256, 256)
    assert duration_of(info) == pytest.approx(result.audio_seconds, abs=0.1)
    assert int(video["nb_read_packets"]) == result.frames == frames_for(result.audio_seconds, 25)
    # Stage-local progress, stage after stage: each climbs to its own 100 %.
    assert list(seen) == ["voice", "animate", "enhance", "assemble"]
    for percents in seen.values():
        assert percents == sorted(percents) and percents[-1] == 100.0
    assert set(result.stage_seconds) == {"voice", "face", "animate", "enhance", "assemble"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
