"""Flicker where users see it: in the files colorize.py writes (issue 22, point 2), beside the figure before encoding,
along motion known by construction (no optical flow: the clips are made with known offsets), and what each encoding
costs in size and speed.

- clips, 640x360, FRAMES frames: a pan over *astronaut*, a zoom into *coffee*, a cat's head (*chelsea*, held out of
  training) crossing a pan over *rocket*, and a cut from a pan over *rocket* to a zoom into *chelsea*; the source
  files are FFV1 (lossless), so the output's encoding is the only loss after colorization;
- flicker: Lai et al.'s warp error on ab (Lab, scikit-image's conversion), each frame against the previous one
  sampled where the construction says each pixel was (bilinear; pixels that entered the frame, that an object
  uncovered or that lie within 3 px of its edge are left out; no pair across the cut). The truth's own is the
  measurement's floor (resampling);
- per clip: per-frame colorization and the temporal filter's in memory, then the temporal frames written by
  colorize_video in each ENCODINGS entry and read back: flicker, the share of the in-memory reduction the file keeps
  ((per-frame - written) / (per-frame - temporal)), the ab change the encoding made (mean and 99th percentile),
  bytes per frame, and frames/s of colorize_video's writing (decode of the source + encode + mux, network excluded:
  the colorized frames are replayed, and the replay is checked once against a real run byte for byte);
- the fringe: the mean b of the background an object has just uncovered (up to TRAIL frames ago), of the band it is
  about to cover, and of the sky far from it, for the truth, per frame, temporal and each file, and a PNG crop
  (bench/cache/fringe.png) to look at.

The model: checkpoints/demo-gan/best.pt (make demo: stage 1 then 2 on the embedded photos), else the bench-engines
stage-1 run (made once by bench/engines.py), or --checkpoint. Target: a master keeps >= 90% of the reduction.

    python bench/video_encoding.py [--checkpoint CKPT] [--frames 24]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench.common import CACHE, print_table, write_results  # noqa: E402

RENDER, SIZE, EDGE, TRAIL, KEEP_TARGET = 256, (360, 640), 3, 4, 0.9
ENCODINGS = {"h264_420_crf18": {"codec": "libx264", "crf": 18, "chroma": "420"},  # colorize.py's default
             "h264_444_crf18": {"codec": "libx264", "crf": 18, "chroma": "444"},  # --chroma 444
             "h264_444_lossless": {"codec": "libx264", "crf": 0, "chroma": "444"},  # --crf 0 --chroma 444
             "ffv1": {"codec": "ffv1", "crf": 18, "chroma": None}}  # --codec ffv1 (RGB, intra-only)
MASTERS = ("h264_444_lossless", "ffv1")


def shifted(dx: float, dy: float, size=SIZE):
    """The map of a pan: frame i+1's pixel (x, y) was at (x + dx, y + dy) in frame i."""
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    return xs + dx, ys + dy


def scaled(rate: float, size=SIZE):
    """The map of clips.zoom: frame i+1 shows the photo magnified rate times more, about the frame's centre."""
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    cy, cx = size[0] / 2, size[1] / 2
    return cx + (xs - cx) / rate, cy + (ys - cy) / rate


def inside(map_x, map_y, size=SIZE):
    return (map_x >= 0) & (map_x <= size[1] - 1) & (map_y >= 0) & (map_y <= size[0] - 1)


def cat_head() -> tuple[np.ndarray, np.ndarray]:
    """chelsea's head as an ellipse (RGB, mask), 150x180."""
    import cv2
    from clips import photo
    head = np.ascontiguousarray(cv2.resize(photo("chelsea")[20:260, 100:390], (180, 150), cv2.INTER_AREA))
    ys, xs = np.mgrid[0:150, 0:180]
    return head, ((ys - 75) / 75) ** 2 + ((xs - 90) / 90) ** 2 <= 1


def crossing(n: int, step=(0, 1), speed=4):
    """A cat's head moving right by `speed` px a frame over a pan (background moving by -step)."""
    import cv2
    from clips import pan
    head, shape = cat_head()
    frames, masks, pairs = [], [], []
    top, left = (SIZE[0] - 150) // 2, 60
    for i, frame in enumerate(pan("rocket", n, SIZE, step)):
        mask = np.zeros(SIZE, bool)
        mask[top:top + 150, left + speed * i:left + speed * i + 180] = shape
        frame[mask] = head[shape]
        frames.append(frame)
        masks.append(mask)
    band = lambda m: cv2.dilate(m.astype(np.uint8), np.ones((2 * EDGE + 1,) * 2, np.uint8)) > 0  # noqa: E731
    core = lambda m: cv2.erode(m.astype(np.uint8), np.ones((2 * EDGE + 1,) * 2, np.uint8)) > 0  # noqa: E731
    bx, by = shifted(step[1], step[0])
    ox, oy = shifted(-speed, 0)
    for prev, cur in zip(masks, masks[1:]):
        map_x, map_y = np.where(cur, ox, bx), np.where(cur, oy, by)
        src = np.round(map_y).astype(int).clip(0, SIZE[0] - 1), np.round(map_x).astype(int).clip(0, SIZE[1] - 1)
        valid = inside(map_x, map_y) & (core(cur) & core(prev)[src] | ~band(cur) & ~band(prev)[src])
        pairs.append((map_x, map_y, valid))
    return frames, pairs, masks


def known_clips(n: int) -> dict:
    """{name: (frames, per-pair (map_x, map_y, valid) or None across a cut, object masks or None)}."""
    from clips import cut, pan, zoom
    half = n // 2

    def moving(frames, maps):
        return frames, [(x, y, inside(x, y)) if x is not None else None for x, y in maps], None
    pan_map, zoom_map = shifted(2.0, 1.0), scaled(1.01)
    return {"pan_astronaut": moving(pan("astronaut", n, SIZE, (1.0, 2.0)), [pan_map] * (n - 1)),
            "zoom_coffee": moving(zoom("coffee", n, SIZE, 1.01), [zoom_map] * (n - 1)),
            "cat_crossing_rocket": crossing(n),
            "cut_rocket_chelsea": moving(cut(pan("rocket", half, SIZE, (0.0, 2.0)), zoom("chelsea", n - half, SIZE,
                                                                                         1.01)),
                                         [shifted(2.0, 0.0)] * (half - 1) + [(None, None)]
                                         + [zoom_map] * (n - half - 1))}


def ab_of(frames) -> list[np.ndarray]:
    import skimage.color
    return [skimage.color.rgb2lab(f)[..., 1:].astype(np.float32) for f in frames]


def flicker(abs_: list[np.ndarray], pairs: list) -> float:
    """Mean over pairs of the mean squared ab distance (ab^2) to the previous frame along the known motion."""
    import cv2
    errors = []
    for prev, cur, pair in zip(abs_, abs_[1:], pairs):
        if pair is not None:
            map_x, map_y, valid = pair
            warped = cv2.remap(prev, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            errors.append(float(((cur - warped) ** 2).sum(-1)[valid].mean()))
    return float(np.mean(errors))


def write_source(path: Path, frames) -> Path:
    """The clip as a lossless FFV1 file: colorize_video decodes exactly these frames."""
    import av
    with av.open(str(path), "w", format="matroska") as sink:
        stream = sink.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "bgr0"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            sink.mux(stream.encode(frame))
        sink.mux(stream.encode())
    return path


@contextlib.contextmanager
def replayed(frames):
    """colorize_video writes these frames instead of running the network: its decode, encode and mux, as is."""
    from gan_colorizer.colorize import video
    original = video.colorized_frames
    video.colorized_frames = lambda colorizer, decoded, *args, **kwargs: (f for f, _ in zip(frames, decoded))
    try:
        yield
    finally:
        video.colorized_frames = original


def read_back(path: Path) -> list[np.ndarray]:
    from gan_colorizer.colorize.video import read_frames
    return list(read_frames(path))


def clip_rows(colorizer, name: str, clip, folder: Path, check: bool) -> tuple[list[dict], dict]:
    from gan_colorizer.colorize.video import colorize_video, colorized_frames
    frames, pairs, masks = clip
    src = write_source(folder / f"{name}.mkv", frames)
    per_frame = list(colorized_frames(colorizer, frames, 0.0))
    temporal = list(colorized_frames(colorizer, frames, None))
    truth_ab, pf_ab, t_ab = ab_of(frames), ab_of(per_frame), ab_of(temporal)
    f_truth, f_pf, f_t = flicker(truth_ab, pairs), flicker(pf_ab, pairs), flicker(t_ab, pairs)
    rows, written = [], {"truth": truth_ab, "per_frame": pf_ab, "temporal": t_ab}
    for label, enc in ENCODINGS.items():
        dst = folder / f"{name}_{label}.mkv"
        with replayed(temporal):
            start = time.perf_counter()
            colorize_video(None, src, dst, **enc)
            seconds = time.perf_counter() - start
        if check and label == "h264_420_crf18":  # the replay writes what the network's own run writes
            colorize_video(colorizer, src, folder / "check.mkv", **enc)
            assert (folder / "check.mkv").read_bytes() == dst.read_bytes(), "the replay differs from a real run"
        back = ab_of(read_back(dst))
        change = np.sqrt(np.concatenate([((b - a) ** 2).sum(-1).ravel() for a, b in zip(t_ab, back)]))
        f_w = flicker(back, pairs)
        written[label] = back
        rows.append({"what": "flicker", "clip": name, "encoding": label, "frames": len(frames),
                     "flicker_truth": f_truth, "flicker_per_frame": f_pf, "flicker_temporal": f_t,
                     "flicker_written": f_w, "reduction_before_pct": 100 * (1 - f_t / f_pf),
                     "reduction_written_pct": 100 * (1 - f_w / f_pf), "kept_pct": 100 * (f_pf - f_w) / (f_pf - f_t),
                     "ab_change_mean": float(change.mean()), "ab_change_p99": float(np.percentile(change, 99)),
                     "kb_per_frame": dst.stat().st_size / len(frames) / 1024, "write_fps": len(frames) / seconds})
    return rows, written


def fringe(written: dict, masks: list, frames: list, crop_to: Path) -> list[dict]:
    """Mean b (Lab) per source of ab in three parts of the background: the band the object uncovered up to TRAIL
    frames ago (trailing), the band it covers within the next TRAIL frames (leading: the same distance from the
    edge, no history), and the sky at least 30 px from the object (the model's own sky); a PNG of the middle frame
    (the truth's L with each source's ab, one column each: truth, per frame, temporal, each file) for the eye."""
    import cv2
    n = len(masks)
    union = lambda idx: np.logical_or.reduce([masks[j] for j in idx])  # noqa: E731
    trailing = {i: union(range(i - TRAIL, i)) & ~masks[i] for i in range(TRAIL, n - TRAIL)}
    leading = {i: union(range(i + 1, i + TRAIL + 1)) & ~masks[i] for i in trailing}
    far = {i: ~(cv2.dilate(masks[i].astype(np.uint8), np.ones((61, 61), np.uint8)) > 0) for i in trailing}
    rows = []
    for label, abs_ in written.items():
        mean_b = lambda bands: float(np.mean([abs_[i][..., 1][band].mean() for i, band in bands.items()]))  # noqa
        rows.append({"what": "fringe", "clip": "cat_crossing_rocket", "source": label, "b_trailing": mean_b(trailing),
                     "b_leading": mean_b(leading), "b_far": mean_b(far),
                     "band_pct": 100 * float(np.mean([band.mean() for band in trailing.values()]))})
    _crop_png(written, masks, frames, crop_to)
    return rows


def _crop_png(written: dict, masks: list, frames: list, path: Path) -> None:
    """The middle frame's trailing edge (30 px either side of the object's left end, its middle rows), 4x enlarged:
    the truth's L with each source's ab, side by side in the order of `written`."""
    import skimage.color
    from PIL import Image
    i = len(masks) // 2
    rows, cols = np.flatnonzero(masks[i].any(1)), np.flatnonzero(masks[i].any(0))
    third = (rows[-1] - rows[0]) // 3
    window = np.s_[rows[0] + third:rows[-1] - third, max(0, cols[0] - 30):cols[0] + 30]
    light = skimage.color.rgb2lab(frames[i])[..., :1]
    crops = [(skimage.color.lab2rgb(np.concatenate([light, abs_[i]], -1))[window] * 255).round().astype(np.uint8)
             for abs_ in written.values()]
    gap = np.full((crops[0].shape[0], 2, 3), 255, np.uint8)
    strip = np.concatenate([part for crop in crops for part in (crop, gap)], 1)
    Image.fromarray(strip).resize((4 * strip.shape[1], 4 * strip.shape[0]), Image.NEAREST).save(path)


def summary(rows: list[dict]) -> list[dict]:
    """Per encoding, the means over the clips, and whether a master keeps KEEP_TARGET of the reduction on each."""
    out = []
    for label in ENCODINGS:
        mine = [r for r in rows if r.get("encoding") == label and r["what"] == "flicker"]
        mean = {k: float(np.mean([r[k] for r in mine])) for k in mine[0] if isinstance(mine[0][k], float)}
        row = {"what": "flicker", "clip": "all clips (mean)", "encoding": label, **mean,
               "kept_min_pct": min(r["kept_pct"] for r in mine)}
        if label in MASTERS:
            met = row["kept_min_pct"] >= 100 * KEEP_TARGET
            row["target"] = f"{label} keeps >= {100 * KEEP_TARGET:.0f}% on every clip: {'met' if met else 'not met'}"
        out.append(row)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    from bench.video import checkpoint
    from gan_colorizer.colorize.api import Colorizer
    try:
        ckpt = checkpoint(args.checkpoint)
    except SystemExit:
        from bench.engines import bench_checkpoint
        ckpt = bench_checkpoint()
    colorizer = Colorizer.from_checkpoint(ckpt, "cpu", RENDER, "off", channels_last=True)
    folder = CACHE / "video_encoding"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, clip) in enumerate(known_clips(args.frames).items()):
        mine, written = clip_rows(colorizer, name, clip, folder, check=i == 0)
        rows += mine
        if clip[2] is not None:
            rows += fringe(written, clip[2], clip[0], CACHE / "fringe.png")
        print_table(mine, list(mine[0]))
    rows += summary(rows)
    path = write_results("video_encoding", rows, {
        "checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt), "render": RENDER,
        "clips": f"4 x {args.frames} frames, {SIZE[1]}x{SIZE[0]}, FFV1 sources",
        "targets": "; ".join(r["target"] for r in rows if "target" in r)})
    print(f"wrote {path}; the fringe crop: {CACHE / 'fringe.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
