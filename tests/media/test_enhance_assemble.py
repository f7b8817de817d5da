from __future__ import annotations

import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.media.assemble import assemble
from services.stage_runner.media.enhance import enhance
from services.stage_runner.media.ffmpeg import duration_of, probe, stream_of
from tests.media.conftest import SAMPLE_TEXT, espeak_wav, read_gray_frames, read_wav


async def test_enhance_doubles_the_size_and_keeps_every_frame(talking_head, tmp_path):
    seen: list[float] = []

    async def on_progress(percent: float, message: str) -> None:
        seen.append(percent)

    out = await enhance(talking_head.path, tmp_path / "enhanced.mp4", on_progress=on_progress)
    video = stream_of(await probe(out), "video")
    assert (video["width"], video["height"]) == (512, 512)
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert int(video["nb_read_packets"]) == talking_head.frames
    assert seen[-1] == 100.0 and seen == sorted(seen)


async def test_enhance_refuses_a_bad_factor_and_a_corrupt_input(talking_head, tmp_path):
    with pytest.raises(VidsynthError) as caught:
        await enhance(talking_head.path, tmp_path / "x.mp4", factor=9)
    assert caught.value.code == "INVALID_ARGUMENT"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(talking_head.path.read_bytes()[:4000])
    with pytest.raises(VidsynthError) as caught:
        await enhance(corrupt, tmp_path / "x.mp4")
    assert caught.value.code == "STAGE_FAILED"
    assert not (tmp_path / "x.mp4").exists() and not list(tmp_path.glob(".*"))


async def test_assemble_writes_a_verified_h264_aac_mp4_and_a_thumbnail(
    talking_head, speech_with_pauses, tmp_path
):
    out_dir = tmp_path / "output"
    outputs = await assemble(talking_head.path, speech_with_pauses[0], out_dir)
    assert outputs == {"video": out_dir / "video.mp4", "thumbnail": out_dir / "thumbnail.jpg"}
    assert sorted(p.name for p in out_dir.iterdir()) == ["thumbnail.jpg", "video.mp4"]
    info = await probe(outputs["video"])
    video, audio = stream_of(info, "video"), stream_of(info, "audio")
    assert (video["codec_name"], video["pix_fmt"], audio["codec_name"]) == ("h264", "yuv420p", "aac")
    samples, rate = read_wav(speech_with_pauses[0])
    assert duration_of(info) == pytest.approx(samples.size / rate, abs=0.1)
    assert int(video["nb_read_packets"]) == talking_head.frames
    # faststart: the index (moov) comes before the media data (mdat).
    head = outputs["video"].read_bytes()[:4096]
    assert 0 < head.find(b"moov") < max(head.find(b"mdat"), 4096)
    assert outputs["thumbnail"].read_bytes()[:3] == b"\xff\xd8\xff"
    assert len(read_gray_frames(outputs["video"])) == talking_head.frames


async def test_a_corrupted_intermediate_fails_and_leaves_no_video(talking_head, speech_with_pauses, tmp_path):
    out_dir = tmp_path / "output"
    corrupt = tmp_path / "animation.mp4"
    data = bytearray(talking_head.path.read_bytes())
    data[len(data) // 3 :] = b"\x00" * (len(data) - len(data) // 3)  # the tail of the file is wiped
    corrupt.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(talking_head.path.read_bytes()[:3000])
    for broken in (corrupt, truncated):
        with pytest.raises(VidsynthError) as caught:
            await assemble(broken, speech_with_pauses[0], out_dir)
        assert caught.value.code == "STAGE_FAILED", broken
        assert not out_dir.exists() or list(out_dir.iterdir()) == []


async def test_a_video_shorter_than_the_speech_fails_verification(talking_head, tmp_path):
    long_speech = espeak_wav(tmp_path / "long.wav", SAMPLE_TEXT * 2)  # ~18 s against a ~4 s video
    out_dir = tmp_path / "output"
    with pytest.raises(VidsynthError) as caught:
        await assemble(talking_head.path, long_speech, out_dir)
    assert caught.value.code == "STAGE_OUTPUT_INVALID"
    assert list(out_dir.iterdir()) == []
