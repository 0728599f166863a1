"""How colorized videos are encoded (issue 22, points 1 and 2), judged from the written bytes: x264's own header (its
SEI names the options it ran with) and the size follow --crf, mpeg4's size follows its quantizer, two runs write the
same file, FFV1 masters decode to the frames bit for bit and 4:4:4 keeps every pixel's colour. The network is
replaced by the identity (the frames go to the encoder as they come), except where the encoder's behaviour after
real network work is the point."""
import hashlib
import re

import av
import numpy as np
import pytest
from clips import pan, write_clip, zoom

from gan_colorizer.colorize import encoding, video
from gan_colorizer.colorize.files import plan_jobs

SIZE = (96, 128)  # (h, w)


@pytest.fixture
def identity(monkeypatch):
    """colorize_video with the network replaced by the identity: what it writes is the encoding of the source."""
    monkeypatch.setattr(video, "colorized_frames", lambda colorizer, frames, *args, **kwargs: frames)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 12-frame pan, written at CRF 0 so that the encoding under test is the only loss after decoding."""
    return write_clip(tmp_path_factory.mktemp("src") / "pan.mp4", pan("astronaut", 12, SIZE, (1.0, 2.0)), crf=0)


def written(src, dst, **encoding_args) -> bytes:
    assert video.colorize_video(None, src, dst, temporal=0, **encoding_args) == 12
    return dst.read_bytes()


def decoded(path) -> tuple[list[np.ndarray], str]:
    """The file's frames as uint8 RGB and its stored pixel format, read back by FFmpeg's decoder."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream.codec_context.pix_fmt


def x264_options(data: bytes) -> str:
    """The options x264 wrote into the stream's SEI ('... crf=18.0 ...'), as any H.264 file carries them."""
    found = re.search(rb"x26[45] .{0,200}?options: ([^\x00]+)", data, re.S)
    assert found, "no x264 / x265 options header in the file"
    return found.group(1).decode("ascii", "replace")


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_crf_reaches_the_written_bitstream_and_its_size(identity, source, tmp_path, codec):
    """PyAV's stream.options and codec_context.options are one mapping: setting the second dropped --crf, so every
    file was written at x264's default CRF 23 (crf=23.0 in the header whatever --crf said)."""
    sizes = {}
    for crf in (0, 18, 35):
        data = written(source, tmp_path / f"{crf}.mp4", codec=codec, crf=crf)
        header = x264_options(data)
        if crf == 0 and codec == "libx264":  # x264's lossless mode names a QP of 0 instead of a CRF
            assert re.search(r"\bqp=0\b", header), header
        else:
            assert f"crf={crf}.0" in header, header
        sizes[crf] = len(data)
    assert sizes[0] > 1.5 * sizes[18] and sizes[18] > 1.5 * sizes[35], sizes


def test_mpeg4s_size_follows_its_quantizer(identity, source, tmp_path):
    """crf / 6 is mpeg4's fixed quantizer; PyAV's codec_context.qscale is the flag only, so q was never set."""
    sizes = [len(written(source, tmp_path / f"{crf}.mkv", codec="mpeg4", crf=crf)) for crf in (12, 18, 51)]
    assert sizes[0] > 1.2 * sizes[1] and sizes[1] > 1.5 * sizes[2], sizes


@pytest.mark.parametrize("codec, suffix", [("libx264", ".mp4"), ("libx264", ".mkv"), ("libx265", ".mov"),
                                           ("mpeg4", ".mkv"), ("ffv1", ".mkv")])
def test_two_runs_write_the_same_bytes(identity, source, tmp_path, codec, suffix):
    """Matroska wrote a random segment id and the muxing date into every file: now muxed bit-exact."""
    first, second = (written(source, tmp_path / f"{i}{suffix}", codec=codec) for i in (1, 2))
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


@pytest.mark.slow
def test_x264_writes_the_same_bitstream_after_network_work(cached_colorizer, tmp_path):
    """With the network and the temporal filter running between frames, x264's AVX-512 code wrote a different
    bitstream on each run on CPUs that have it (held to its AVX2 code now); elsewhere this holds anyway."""
    src = write_clip(tmp_path / "zoom.mp4", zoom("coffee", 16, (128, 192), 1.02))
    runs = []
    for i in range(3):
        video.colorize_video(cached_colorizer, src, tmp_path / f"{i}.mp4")
        with av.open(str(tmp_path / f"{i}.mp4")) as container:
            runs.append(hashlib.sha256(b"".join(bytes(p) for p in container.demux(video=0))).hexdigest())
    assert len(set(runs)) == 1


def test_an_ffv1_master_decodes_to_the_frames_bit_for_bit(identity, source, tmp_path):
    frames, _ = decoded(source)  # what the identity "colorizes"
    written(source, tmp_path / "master.mkv", codec="ffv1")
    back, pix_fmt = decoded(tmp_path / "master.mkv")
    assert pix_fmt == "bgr0" and len(back) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(back, frames))


def test_444_keeps_the_colour_that_420_halves(identity, source, tmp_path):
    """4:2:0 stores one colour per 2x2 pixels: at colour edges that costs levels 4:4:4 keeps (both at CRF 0, x264's
    lossless mode, so that the chroma resolution is the only difference); lossless 4:4:4 is off by the RGB <-> YUV
    rounding only."""
    frames, _ = decoded(source)
    error = {}
    for chroma in ("420", "444"):
        written(source, tmp_path / f"{chroma}.mp4", chroma=chroma, crf=0)
        back, pix_fmt = decoded(tmp_path / f"{chroma}.mp4")
        assert pix_fmt == f"yuv{chroma}p"
        error[chroma] = max(np.abs(a.astype(int) - b).mean() for a, b in zip(back, frames))
    assert error["444"] < 0.5 and 2 * error["444"] < error["420"], error


def test_ffv1_and_its_chroma_pick_the_container_and_mpeg4_refuses_444(tmp_path, capsys):
    from gan_colorizer.colorize import cli
    for name in ("a.mp4", "b.mov", "c.mkv"):
        (tmp_path / name).write_bytes(b"")  # plan_jobs reads names only
    jobs = plan_jobs([str(tmp_path)], tmp_path / "out", "png", "ffv1")
    assert sorted(job.output.name for job in jobs) == ["a.mkv", "b.mkv", "c.mkv"]
    assert encoding.pixel_format("ffv1", None, 4, 4) == "bgr0" and encoding.pixel_format("libx264", None, 4, 4) \
        == "yuv420p" and encoding.pixel_format("libx264", "420", 5, 4) == "yuv444p"  # odd sides: no 4:2:0
    argv = [str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"), "--checkpoint", "never-read.pt", "--codec",
            "mpeg4", "--chroma", "444"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--chroma 444" in err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_colorize_py_writes_an_ffv1_master_as_mkv_and_444_on_request(cli, source, tmp_path):
    code, text, _ = cli(source, "--out", tmp_path / "master", "--codec", "ffv1")
    assert code == 0 and "1 colorized" in text
    with av.open(str(tmp_path / "master" / "pan.mkv")) as container:
        assert (container.streams.video[0].codec_context.name, container.streams.video[0].codec_context.pix_fmt) \
            == ("ffv1", "bgr0")
    code, _, _ = cli(source, "--out", tmp_path / "full", "--chroma", "444", "--crf", "30")
    assert code == 0 and decoded(tmp_path / "full" / "pan.mp4")[1] == "yuv444p"
    assert "crf=30.0" in x264_options((tmp_path / "full" / "pan.mp4").read_bytes())
