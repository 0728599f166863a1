"""Video in, video out (issue 17, point 1): what a colorized video keeps (size, rate, timestamps, rotation, audio
packets), that its frames are the photo path's colorization, streaming, bad and truncated files, and colorize.py on
folders that mix photos and videos."""
import io
import itertools
import logging
import os
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from clips import noisy, pan, write_clip, zoom
from conftest import dated_lines
from PIL import Image

from gan_colorizer.color import AB_SCALE, L_SCALE, rgb_to_model
from gan_colorizer.colorize import cli as colorize_cli
from gan_colorizer.colorize import video
from gan_colorizer.colorize.files import plan_jobs
from gan_colorizer.data.images import UnreadableImage

SIZE = (64, 96)  # (h, w): at --image-size 64 the network sees the frames at their own size


@pytest.fixture(scope="module")
def colorizer(cached_colorizer):
    return cached_colorizer


def stream_facts(path):
    """What a player sees: per video frame (pts, time base), the display matrix, the audio packets as stored."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(stream)]
        time_base = stream.time_base
    with av.open(str(path)) as container:
        audio = [(p.pts, p.dts, bytes(p)) for s in container.streams.audio for p in container.demux(s)
                 if p.size]
    return pts, time_base, video.probe(path), audio


def truncated(path, fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def lab(frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, ab) of a uint8 RGB frame in Lab units."""
    gray_l, ab = rgb_to_model(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None])
    return (gray_l[0, 0] + 1) * L_SCALE, ab[0] * AB_SCALE


def mean_ab(frame: np.ndarray) -> float:
    """Mean |ab| (Lab units) of a uint8 RGB frame."""
    return float(lab(frame)[1].abs().mean())


def test_probe_and_read_frames_give_what_was_written(tmp_path):
    frames = pan("astronaut", 8, SIZE, (1, 2))
    path = write_clip(tmp_path / "pan.mp4", frames, fps=25, audio=True, rotation=90)
    info = video.probe(path)
    assert (info.width, info.height, info.fps, info.frames) == (96, 64, Fraction(25), 8)
    assert info.rotation == 90 and info.audio_streams == 1
    decoded = list(video.read_frames(path))
    assert len(decoded) == 8 and decoded[0].shape == (64, 96, 3) and decoded[0].dtype == np.uint8
    # RGB -> 4:2:0 YUV -> RGB alone moves levels by ~4 on average at this size (CRF 0 too); a wrong frame by ~40
    assert max(np.abs(d.astype(int) - f).mean() for d, f in zip(decoded, frames)) < 8
    assert video.is_video(path) and video.is_video(tmp_path / "A.MKV") and not video.is_video(tmp_path / "a.png")


def test_clips_have_the_motion_they_say():
    """pan moves the content by -step per frame; zoom's centre stays; noise changes every frame."""
    frames = pan("chelsea", 3, SIZE, (0, 3))
    assert np.abs(frames[1][:, 3:].astype(int) - frames[0][:, :-3]).mean() > 20  # not a still
    assert np.abs(frames[1][:, :-3].astype(int) - frames[0][:, 3:]).max() <= 1
    still = zoom("coffee", 2, SIZE, 1.0)
    assert np.array_equal(still[0], still[1])
    shaken = noisy(still, 8, seed=1)
    assert 5 < np.abs(shaken[0].astype(int) - still[0]).mean() < 10 and not np.array_equal(shaken[0], shaken[1])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_a_truncated_video_is_one_reason_naming_it(tmp_path, suffix):
    path = truncated(write_clip(tmp_path / f"clip{suffix}", pan("rocket", 24, SIZE), codec="mpeg4"
                                if suffix == ".avi" else "libx264"))
    with pytest.raises(UnreadableImage) as error:
        for _ in video.read_frames(path):
            pass
    assert error.value.path == str(path) and "\n" not in str(error.value)
    assert "truncated" in error.value.reason or "cannot open" in error.value.reason  # mp4: its index was at the end


def test_a_file_that_is_no_video_is_one_reason(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(UnreadableImage, match="notes.mp4: cannot open the video"):
        video.probe(tmp_path / "notes.mp4")
    with pytest.raises(UnreadableImage, match="missing.mkv: cannot open the video"):
        list(video.read_frames(tmp_path / "missing.mkv"))


def test_an_audio_codec_the_container_cannot_hold_is_left_out_with_one_warning(tmp_path, caplog):
    path = write_clip(tmp_path / "tone.mp4", pan("rocket", 4, SIZE), audio=True)
    with av.open(str(path)) as source, av.open(io.BytesIO(), "w", format="webm") as sink:
        with caplog.at_level(logging.WARNING, logger="gan_colorizer"):
            assert video._audio_streams(path, source, sink) == {}  # WebM holds Opus / Vorbis, not AAC
        with av.open(io.BytesIO(), "w", format="matroska") as mkv:
            assert len(video._audio_streams(path, source, mkv)) == 1
    assert len(caplog.records) == 1 and "tone.mp4: audio stream 1 left out" in caplog.records[0].getMessage()


def test_videos_mix_with_photos_in_a_folder_and_keep_a_container_that_holds_h264(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(src / "photo.png")
    for name in ("a.mp4", "b.avi", "c.webm", "sub/d.MOV", "e.mkv", "e.avi"):
        (src / name).write_bytes(b"")  # plan_jobs reads names only
    outputs = {str(job.output.relative_to(tmp_path / "out")) for job in plan_jobs([str(src)], tmp_path / "out", "jpg")}
    assert outputs == {"photo.jpg", "a.mp4", "b.mkv", "c.mkv", "sub/d.MOV", "e.mkv.mkv", "e.avi.mkv"}


def test_without_pyav_each_video_is_one_line_saying_what_to_install(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from gan_colorizer.colorize.video_jobs import colorize_videos
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError, as in a colorizing-only install
    failed = []
    report = SimpleNamespace(ok=lambda: failed.append(None), fail=lambda path, reason: failed.append((path, reason)))
    jobs = [SimpleNamespace(source=tmp_path / "a.mp4", output=tmp_path / "out" / "a.mp4")]
    colorize_videos(None, jobs, SimpleNamespace(), report)
    assert failed == [(tmp_path / "a.mp4", failed[0][1])] and "pip install av opencv-python-headless" in failed[0][1]


@pytest.mark.parametrize("flag", [("--crf", "52"), ("--crf", "-1"), ("--temporal", "1.5"), ("--temporal", "nan"),
                                  ("--codec", "vp9")])
def test_bad_video_flags_exit_2_with_one_line(tmp_path, capsys, flag):
    path = write_clip(tmp_path / "clip.mp4", pan("rocket", 2, SIZE))
    argv = [str(path), "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "never-read.pt"), *flag]
    if flag[0] == "--codec":
        with pytest.raises(SystemExit) as exit_info:  # argparse's choices
            colorize_cli.main(argv)
        assert exit_info.value.code == 2
    else:
        assert colorize_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag[0] in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_colorized_frames_stream_and_put_the_temporal_filter_before_mood_controls(colorizer, monkeypatch):
    """The filter sees render-size L (0-100) and ab in Lab units, frame by frame; mood controls apply after it.
    An endless input gives frames: nothing is collected."""
    seen = []

    def gray_filter(small_l, small_ab):
        seen.append((small_l.shape, small_ab.shape, float(small_l.max())))
        return np.zeros_like(small_ab)  # a filter that removes all colour
    monkeypatch.setattr(video, "temporal_filter", lambda strength: gray_filter)
    endless = itertools.cycle(pan("astronaut", 3, SIZE))
    out = list(itertools.islice(video.colorized_frames(colorizer, endless, 0.5, {"temperature": 30.0}, 2), 3))
    assert len(out) == 3 and len(seen) == 4  # two batches of two
    assert seen[0][:2] == ((64, 96), (2, 64, 96)) and 50 < seen[0][2] <= 100
    ab = lab(out[0])[1]
    assert abs(float(ab[0].mean())) < 2 and float(ab[1].mean()) > 15  # gray, then warmed


@pytest.mark.slow
def test_frames_are_the_photo_paths_colorization(colorizer, tmp_path):
    frames = zoom("coffee", 5, SIZE, 1.02)
    out = list(video.colorized_frames(colorizer, frames, temporal=0, batch_size=4))
    photos = [np.asarray(colorizer.colorize(Image.fromarray(f))) for f in frames]
    assert all(np.abs(o.astype(int) - p).max() <= 1 for o, p in zip(out, photos))  # batched vs alone: rounding
    assert min(mean_ab(o) for o in out) > 5  # the tiny network predicts colour: these are not gray frames
    written = video.colorize_video(colorizer, write_clip(tmp_path / "in.mp4", frames), tmp_path / "out.mp4",
                                   temporal=0)
    decoded = list(video.read_frames(tmp_path / "out.mp4"))
    assert written == len(decoded) == 5
    source = list(video.read_frames(tmp_path / "in.mp4"))  # the output's L is the (decoded) source's
    expected = [lab(e) for e in video.colorized_frames(colorizer, source, temporal=0)]
    for (l_out, ab_out), (l_expected, ab_expected) in zip(map(lab, decoded), expected):  # H.264 4:2:0 at CRF 18
        assert (l_out - l_expected).abs().mean() < 4 and (ab_out - ab_expected).abs().mean() < 8  # |ab| ~ 30


@pytest.mark.slow
@pytest.mark.parametrize("suffix, kwargs, codec", [
    (".mp4", {"audio": True, "rotation": 90, "fps": 25}, "libx264"),
    (".mov", {"pts": [0, 100, 200, 350, 400, 600, 700, 900], "fps": 24}, "libx265"),  # variable frame rate
    (".mkv", {"audio": True, "rotation": -90, "fps": Fraction(30000, 1001)}, "mpeg4"),
    (".mp4", {"time_base": Fraction(1, 90000), "fps": 25}, "mpeg4"),  # a camera's time base: too fine for MPEG-4
])
def test_the_output_keeps_size_rate_timestamps_rotation_and_audio_packets(colorizer, tmp_path, suffix, kwargs,
                                                                          codec):
    src = write_clip(tmp_path / f"in{suffix}", pan("astronaut", 8, SIZE, (1, 1)), **kwargs)
    dst = tmp_path / "out" / f"in{suffix}"
    frames = []
    assert video.colorize_video(colorizer, src, dst, temporal=0, codec=codec, progress=frames.append) == 8
    assert frames == [1] * 8 and os.listdir(dst.parent) == [dst.name]
    pts_in, base_in, info_in, audio_in = stream_facts(src)
    pts_out, base_out, info_out, audio_out = stream_facts(dst)
    assert [p * base_out for p in pts_out] == [p * base_in for p in pts_in]
    assert (info_out.width, info_out.height, info_out.frames, info_out.matrix) == \
        (info_in.width, info_in.height, info_in.frames, info_in.matrix)
    assert info_out.fps == info_in.fps or "pts" in kwargs  # a variable rate keeps its timestamps, not an average
    assert audio_out == audio_in and bool(audio_in) == kwargs.get("audio", False)  # copied, not re-encoded
    with av.open(str(dst)) as container:
        assert container.streams.video[0].codec_context.name == {"libx264": "h264", "libx265": "hevc"}.get(codec, codec)


@pytest.mark.slow
def test_an_h264_avi_with_b_frames_is_timed_by_its_frame_count(colorizer, tmp_path):
    """AVI stores no presentation times: its H.264 B-frames decode with reordered packet times (1, 4, 3, 5, 2, ...),
    which the encoder refuses; the output is timed at the stream's rate instead, every frame kept."""
    src = write_clip(tmp_path / "in.avi", pan("astronaut", 10, SIZE, (1, 1)), fps=25)
    with av.open(str(src)) as container:
        decoded = [f.pts for f in container.decode(video=0)]
    assert decoded != sorted(decoded)  # the case itself: reordered times
    dst = tmp_path / "out" / "in.mkv"
    assert video.colorize_video(colorizer, src, dst, temporal=0) == 10
    pts_out, base_out, info_out, _ = stream_facts(dst)
    times = [float(p * base_out) for p in pts_out]
    assert info_out.frames in (None, 10) and len(times) == 10
    assert np.allclose(np.diff(times), 1 / 25, atol=1e-3)  # Matroska keeps milliseconds


@pytest.mark.slow
def test_an_interrupt_or_a_bad_frame_leaves_nothing_under_the_final_name(colorizer, tmp_path):
    src = write_clip(tmp_path / "in.mp4", pan("rocket", 6, SIZE))

    def interrupt(n):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        video.colorize_video(colorizer, src, tmp_path / "out" / "in.mp4", temporal=0, batch_size=2, progress=interrupt)
    assert os.listdir(tmp_path / "out") == []
    bad = truncated(write_clip(tmp_path / "bad.mkv", pan("rocket", 24, SIZE)))
    with pytest.raises(UnreadableImage, match="truncated"):
        video.colorize_video(colorizer, bad, tmp_path / "out" / "bad.mkv", temporal=0, batch_size=2)
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.slow
def test_colorize_py_on_a_folder_of_photos_videos_and_a_truncated_video(cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(pan("chelsea", 1, SIZE)[0]).save(src / "photo.jpg")
    write_clip(src / "clip.avi", pan("astronaut", 6, SIZE), codec="mpeg4")
    truncated(write_clip(src / "broken.mkv", pan("rocket", 24, SIZE)))
    code, text, err = cli(src, "--out", out)  # the temporal filter at its default strength
    assert code == 1 and text.startswith("colorizing 1 photo and 2 videos into")
    lines = dated_lines(text, "clip.avi")  # off a terminal: each video's progress in frames
    assert len(lines) == 1 and " clip.avi 6/6 frame, " in lines[0] and not dated_lines(text, "broken.mkv")
    assert err.count("\n") == 1 and f"error: {src / 'broken.mkv'}: truncated" in err
    assert sorted(os.listdir(out)) == ["clip.mkv", "photo.png"]  # nothing under broken's name, no temporary left
    assert video.probe(out / "clip.mkv").frames is None and len(list(video.read_frames(out / "clip.mkv"))) == 6
    before = (out / "clip.mkv").stat().st_mtime_ns
    code, text, _ = cli(src, "--out", out, "--temporal", "0")
    assert code == 1 and "2 already there" in text and (out / "clip.mkv").stat().st_mtime_ns == before
    (src / "broken.mkv").unlink()
    code, text, _ = cli(src, "--out", out, "--temporal", "0", "--overwrite", "--saturation", "0")
    assert code == 0 and "2 colorized" in text and (out / "clip.mkv").stat().st_mtime_ns != before
    assert max(mean_ab(f) for f in video.read_frames(out / "clip.mkv")) < 2  # replaced: now gray


@pytest.mark.slow
def test_an_onnx_model_colorizes_videos_as_it_colorizes_photos(tiny_checkpoint, tmp_path):
    """The ONNX engines' numpy maths (no torch) serve videos too: frames equal the same engine's photos."""
    from gan_colorizer import Colorizer
    from gan_colorizer.colorize.onnx import main as export_main
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx"), "--no-check"]) == 0
    onnx = Colorizer.from_checkpoint(tmp_path / "g.onnx", render_size=64)
    frames = pan("chelsea", 3, SIZE, (2, 0))
    out = list(video.colorized_frames(onnx, frames, temporal=0, controls={"saturation": 1.5}))
    photos = [np.asarray(onnx.colorize(Image.fromarray(f), saturation=1.5)) for f in frames]
    assert all(np.abs(o.astype(int) - p).max() <= 1 for o, p in zip(out, photos)) and mean_ab(out[0]) > 5


@pytest.mark.system
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_in_the_script_leaves_no_video_nor_its_temporary(tiny_checkpoint, tmp_path, signum):
    """Ctrl-C (130) and SIGTERM (143: kill, a scheduler's stop) alike: the video being written is removed, its hidden
    .part included, and the message counts videos."""
    import signal
    import subprocess
    import time

    from conftest import ROOT
    src = write_clip(tmp_path / "long.mp4", pan("astronaut", 120, SIZE, (0.2, 0.3)), audio=True)
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "colorize.py"), str(src), "--out", str(out), "--checkpoint",
           str(tiny_checkpoint), "--image-size", "64", "--batch-size", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as at a terminal
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out.is_dir() and list(out.glob(".*.part"))):
        time.sleep(0.05)
    time.sleep(0.5)  # a few frames into the temporary file
    proc.send_signal(getattr(signal, signum))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, signum) and "Traceback" not in err, err
    assert "interrupted after 0 of 1 video: every written file is complete" in err
    assert os.listdir(out) == []


def test_off_a_terminal_a_videos_progress_is_a_dated_line_in_frames(tmp_path, monkeypatch, caplog):
    """The wiring alone (no network, no encoder): colorize_videos hands each video a Progress in frames."""
    from types import SimpleNamespace

    from gan_colorizer.colorize import video_jobs
    from gan_colorizer.options import parse_options

    def colorize_video(colorizer, src, dst, *args, progress, **kwargs):
        for _ in range(5):
            progress(1)
    monkeypatch.setattr(video_jobs, "probe", lambda path, max_pixels: SimpleNamespace(frames=5))
    monkeypatch.setattr(video_jobs, "colorize_video", colorize_video)
    args = parse_options(colorize_cli.build_parser(), colorize_cli.ColorizeOptions, ["in", "--checkpoint", "c.pt",
                                                                                   "--out", str(tmp_path)])
    report = colorize_cli.Report(1, kept=0)
    with caplog.at_level(logging.INFO, logger="gan_colorizer"):
        video_jobs.colorize_videos(None, [SimpleNamespace(source=tmp_path / "film.mp4", output=tmp_path / "o.mp4")],
                                   args, report)
    lines = dated_lines(caplog.messages, "film.mp4")
    assert report.tally.done == 1 and len(lines) == 1 and " film.mp4 5/5 frame, " in lines[0]


def test_two_videos_bound_for_one_output_name_get_a_hint_that_fits_videos(tmp_path):
    """--format applies to photos only: the clash of two videos must not suggest it."""
    from gan_colorizer.errors import UserError
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "pan.mp4").write_bytes(b"")
    with pytest.raises(UserError) as error:
        plan_jobs([str(tmp_path / "a" / "pan.mp4"), str(tmp_path / "b" / "pan.mp4")], tmp_path / "out", "png")
    assert "would both be written to" in str(error.value) and "--format" not in str(error.value)
