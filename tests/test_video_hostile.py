"""Hostile videos (issue 22): frame bombs declared in a header of a few KB or arriving mid-stream, clips bounded in
memory, and files whose content is not what their name says (an ffconcat script or a PNG named .mp4). Each is one
line naming the file, nothing written outside --out, no memory runaway."""
import json
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from clips import pan, write_clip
from conftest import ROOT
from PIL import Image

from gan_colorizer.colorize import video
from gan_colorizer.data.images import UnreadableImage

BOMB = 16000  # a side: one frame of 256 MP (a 16000x16000 RGB frame is 768 MB before the network sees it)
SIZE = (48, 64)


def png_frame(width: int, height: int, rate=Fraction(25)):
    """An encoder of 1-bit PNG frames: a blank 16000x16000 one compresses to ~30 KB."""
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt, encoder.time_base = width, height, "monob", 1 / rate
    frame = av.VideoFrame(width, height, "monob")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return encoder, frame


def write_png_video(path, sizes: list[tuple[int, int]]):
    """A video of PNG frames of the given (width, height) in turn, the stream declaring the first size: each PNG
    carries its own size, so the size changes mid-stream where the list does."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "monob"
        for index, size in enumerate(sizes):
            encoder, frame = png_frame(*size)
            frame.pts = index
            for packet in encoder.encode(frame) + encoder.encode():
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, 25)
                container.mux(packet)
    return path


# the process's own peak RSS (VmHWM: of this program; ru_maxrss would count the forking parent's pages too)
PEAK = ("def peak_mb():\n"
        "    with open('/proc/self/status') as f:\n"
        "        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM')) / 1024\n")


def read_in_child(path, max_pixels=None) -> dict:
    """read_frames(path) in a fresh process: the reason it raised (or the frames read) and the process's peak RSS."""
    code = ("import json, sys\n"
            "from gan_colorizer.colorize.video import read_frames\n"
            "from gan_colorizer.data.images import UnreadableImage\n"
            "out = {}\n"
            "try:\n"
            "    out['frames'] = sum(1 for _ in read_frames(sys.argv[1], *map(int, sys.argv[2:])))\n"
            "except UnreadableImage as e:\n"
            "    out['error'] = str(e)\n"
            "out['peak_mb'] = peak_mb()\n"
            "print(json.dumps(out))\n")
    limit = [] if max_pixels is None else [str(max_pixels)]
    done = subprocess.run([sys.executable, "-c", PEAK + code, str(path), *limit], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_frame_bomb_declared_in_a_few_kb_is_refused_before_decoding(tmp_path):
    """16000x16000 in a 30 KB file: refused from the header, at the memory of an empty process (before: the 768 MB
    RGB frame and more were allocated, 6.9 GB in colorize.py)."""
    path = write_png_video(tmp_path / "bomb.mov", [(BOMB, BOMB)])
    assert path.stat().st_size < 100_000
    seen = read_in_child(path)
    assert seen.get("error") == (f"{path}: too large: frames of 16000x16000 are 256 MP, over the limit of 35 MP per "
                                 f"frame (--max-pixels)"), seen
    assert seen["peak_mb"] < 400, seen  # av + numpy: ~70 MB; one decoded RGB frame of the bomb alone is 768 MB


def test_each_frame_is_checked_so_a_size_change_mid_stream_is_refused(tmp_path):
    """The first frames pass; the later, larger one is refused by its own size, not the first frame's: FFmpeg's
    decoder refuses one far over the limit before allocating it, our check any other before it is converted."""
    bomb = write_png_video(tmp_path / "late_bomb.avi", [(64, 48)] * 3 + [(BOMB, BOMB)])
    seen = read_in_child(bomb)
    assert "decoding stopped after" in seen.get("error", "") and "over the limit of 35 MP per frame" in seen["error"]
    assert "\n" not in seen["error"] and seen["peak_mb"] < 400, seen
    grows = write_png_video(tmp_path / "grows.avi", [(320, 240)] * 3 + [(352, 288)])
    with pytest.raises(UnreadableImage) as error:
        list(video.read_frames(grows, max_pixels=320 * 240))
    assert error.value.reason == ("frame 4: too large: frames of 352x288 are 101,376 pixels, over the limit of 76,800 "
                                  "pixels per frame (--max-pixels)")
    assert len(list(video.read_frames(grows, max_pixels=352 * 288))) == 4


def test_the_limit_defaults_to_8k_frames_and_max_pixels_moves_it(tmp_path):
    path = write_clip(tmp_path / "clip.mkv", pan("rocket", 3, SIZE))
    assert len(list(video.read_frames(path))) == 3 and video.MAX_FRAME_PIXELS == 8192 * 4320
    with pytest.raises(UnreadableImage, match="too large: frames of 64x48 are 3,072 pixels, over the limit of 3,071"):
        video.probe(path, max_pixels=64 * 48 - 1)
    assert video.probe(path, max_pixels=64 * 48).width == 64


def test_colorize_py_refuses_a_frame_bomb_in_one_line_and_colorizes_the_rest(cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_png_video(src / "bomb.mov", [(BOMB, BOMB)])
    write_clip(src / "good.mp4", pan("rocket", 3, SIZE))
    code, _, err = cli(src, "--out", out)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"error: {src / 'bomb.mov'}: too large: frames of 16000x16000 are 256 MP" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]
    code, _, err = cli(src / "good.mp4", "--out", tmp_path / "out2", "--max-pixels", "3000")
    assert code == 1 and "good.mp4: too large: frames of 64x48 are 3,072 pixels, over the limit of 3,000" in err
    assert not (tmp_path / "out2").exists()


def ffconcat_beside_videos(folder):
    """An ffconcat script named .mp4 listing a video and a PNG below its folder: FFmpeg, guessing the demuxer from
    the content, would play them as the script's own frames."""
    (folder / "sub").mkdir(parents=True)
    write_clip(folder / "sub" / "other.mkv", pan("chelsea", 4, SIZE))
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "sub" / "photo.png")
    (folder / "playlist.mp4").write_text("ffconcat version 1.0\nfile sub/other.mkv\nfile sub/photo.png\n")
    return folder / "playlist.mp4"


@pytest.mark.parametrize("kind", ["ffconcat", "png"])
def test_a_file_whose_content_is_not_what_its_name_says_is_one_line(cli, tmp_path, kind):
    src = tmp_path / "in"
    if kind == "ffconcat":
        path = ffconcat_beside_videos(src)
    else:
        src.mkdir()
        path = src / "photo.mp4"
        Image.new("RGB", (64, 48), (200, 30, 30)).save(path, format="PNG")
    with pytest.raises(UnreadableImage) as error:
        video.probe(path)
    assert error.value.reason.startswith("cannot open the video as MP4 / QuickTime, what its name says (")
    code, _, err = cli(path, "--out", tmp_path / "out")
    assert code == 1 and err == f"error: {path}: {error.value.reason}\n"
    assert not (tmp_path / "out").exists()


def test_a_video_name_is_read_by_the_demuxer_it_names(tmp_path):
    """Every suffix opens its own container (and .webm / .m4v those that hold them); a Matroska named .avi does not."""
    frames = pan("rocket", 3, SIZE)
    for name in ("a.mp4", "a.m4v", "a.mov", "a.mkv", "a.avi"):
        path = write_clip(tmp_path / name, frames, codec="mpeg4" if name.endswith(".avi") else "libx264")
        assert len(list(video.read_frames(path))) == 3, name
    (tmp_path / "a.webm").write_bytes((tmp_path / "a.mkv").read_bytes())  # WebM is Matroska with fewer codecs
    assert video.probe(tmp_path / "a.webm").width == 64
    (tmp_path / "b.avi").write_bytes((tmp_path / "a.mkv").read_bytes())
    with pytest.raises(UnreadableImage, match="cannot open the video as AVI, what its name says"):
        video.probe(tmp_path / "b.avi")


def test_clips_are_scored_in_chunks_bounded_in_pixels(tmp_path, monkeypatch):
    """A chunk of full-size frames holds at most CHUNK_PIXELS (each frame's metrics take ~0.35 KB per pixel), however
    large --batch-size; the scores do not depend on the chunking."""
    import torch

    from gan_colorizer.evaluate import clips
    write_clip(tmp_path / "pan.mp4", pan("astronaut", 7, SIZE, (1, 2)))
    chunks = []
    score_chunk = clips.ClipScorer._chunk

    def spy(self, chunk, *args):
        chunks.append(len(chunk))
        return score_chunk(self, chunk, *args)
    monkeypatch.setattr(clips.ClipScorer, "_chunk", spy)
    rt = type("Runtime", (), {"device": torch.device("cpu")})()
    opts = type("Options", (), {"image_size": 64, "temporal": 0.0, "batch_size": 16, "max_pixels": None})()

    def scores(chunk_pixels):
        monkeypatch.setattr(clips, "CHUNK_PIXELS", chunk_pixels)
        chunks.clear()
        result = clips.ClipScorer([], opts, rt).score(tmp_path / "pan.mp4", "pan.mp4")
        return list(chunks), result.warp[clips.TRUTH], result.truth_cf
    bounded, whole = scores(3 * 64 * 48), scores(10 ** 9)
    assert bounded[0] == [3, 3, 1] and whole[0] == [7]
    assert np.allclose(bounded[1], whole[1]) and np.allclose(bounded[2], whole[2]) and len(bounded[1]) == 6
