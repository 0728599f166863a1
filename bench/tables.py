"""The markdown tables of docs/benchmarks.md, rendered from the committed bench/results/*.json.

    python bench/tables.py      # rewrites every <!-- bench:NAME --> ... <!-- /bench:NAME --> region of the page
                                # (docs/generate.py, which fills every generated region of docs/, calls render_all too)

NAME is a results file's stem (train_speed-cpu for bench/results/train_speed-cpu.json). Every value of every row is
shown, so a table cannot disagree with its JSON without tests/test_bench_tables.py failing.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"



def percent(fraction: float) -> str:
    return fmt(100 * fraction)


# Per benchmark: its tables, each (rows it holds, preferred columns as (key, header[, format])). Columns not named
# here follow under their JSON key; a benchmark not named here gets one table of all its rows.
TABLES = {
    "train_speed": [(None, [
        ("stage", "stage"), ("size", "crop"), ("batch", "batch"), ("amp", "amp"), ("pure_img_s", "pure img/s"),
        ("real_img_s", "real img/s"), ("real_vs_pure", "real / pure"), ("pure_rounds", "pure, per round"),
        ("real_rounds", "real, per round"), ("plain_img_s", "plain img/s"), ("plain_rounds", "plain, per round"),
        ("real_vs_plain", "real / plain"),
        ("pair_rss_mb", "peak RSS MB (pure + real)"), ("plain_rss_mb", "peak RSS MB (plain)")])],
    "bf16_convergence": [(None, [
        ("amp", "amp"), ("steps", "steps"), ("first_g_l1", "first g_l1"),
        ("last_g_l1_mean_of_4", "g_l1 (mean of last 4)"), ("val_l1", "val/l1"), ("val_psnr", "val/psnr"),
        ("seconds", "seconds")])],
    "profile": [(None, [("kind", "kind of work"), ("share", "share %", percent), ("ms_per_step", "ms per step")])],
    "eval_speed": [(None, [
        ("size", "size"), ("batch", "batch"), ("threads", "threads"), ("inference_img_s", "inference img/s"),
        ("metrics_img_s", "with metrics img/s"), ("metrics_overhead", "metrics overhead %", percent),
        ("loader_inference_img_s", "loader + inference img/s"), ("evaluate_img_s", "evaluate() img/s"),
        *((f"{m}_ms", f"{m} ms/img") for m in ("lab", "psnr", "ssim", "delta_e2000", "colorfulness", "auc_ab"))])],
    "colorize_speed": [
        (lambda row: "folder_img_s" in row, [
            ("what", "what"), ("render", "render"), ("batch", "batch"), ("amp", "amp"), ("pure_img_s", "pure img/s"),
            ("folder_img_s", "folder img/s"), ("folder_vs_pure", "folder / pure"),
            ("pure_cpu_s_img", "pure CPU s/img"), ("folder_cpu_s_img", "folder CPU s/img")]),
        (lambda row: "folder_img_s" not in row, [
            ("what", "what"), ("size", "size"), ("latency_s", "latency s"), ("peak_rss_mb", "peak RSS MB"),
            ("rss_after_model_load_mb", "RSS after model load MB"), ("ok", "ok")])],
    "int8_calibration": [(None, [
        ("checkpoint", "checkpoint"), ("calibration", "calibration set"), ("photos", "photos"),
        ("calibration_mean", "on itself: mean"), ("calibration_worst", "on itself: worst"),
        ("sample_mean", "sample photos: mean"), ("sample_worst", "sample photos: worst"),
        ("refused_by_default", "refused"), ("seconds", "seconds")])],
    "engines": [
        (lambda row: "img_s" in row, [
            ("engine", "engine"), ("photos", "photos"), ("render", "render"), ("img_s", "img/s (inference path)"),
            ("network_img_s", "network img/s"), ("vs_torch_fp32", "vs torch fp32"), ("de00_mean", "CIEDE2000 mean"),
            ("de00_p99", "CIEDE2000 p99"), ("full_l_ms", "full-size L ms"), ("small_l_ms", "render-size L ms"),
            ("network_ms", "network ms"), ("recombine_ms", "upsample + recombine ms"),
            ("peak_rss_mb", "peak RSS MB"), ("rss_after_load_mb", "RSS after load MB")]),
        (lambda row: "img_s" not in row, [
            ("engine", "engine"), ("photos", "photo"), ("render", "render"), ("s_per_photo", "s per photo"),
            ("vs_torch_fp32", "vs torch fp32"), ("peak_rss_mb", "peak RSS MB"),
            ("rss_after_load_mb", "RSS after load MB"), ("torch_imported", "torch imported")])],
    "video": [
        (lambda row: row["what"] == "quality", [
            ("clip", "clip"), ("frames", "frames"), ("warp_per_frame", "warp error, per frame"),
            ("warp_temporal", "warp error, temporal"), ("warp_reduction_pct", "warp error reduction %"),
            ("warp_truth", "warp error of the truth"), ("de00_per_frame", "CIEDE2000, per frame"),
            ("de00_temporal", "CIEDE2000, temporal"), ("de00_increase", "CIEDE2000 change"), ("strength", "strength"),
            ("target", "targets")]),
        (lambda row: row["what"] == "speed", [
            ("size", "frame size"), ("mode", "mode"), ("frames", "frames"), ("fps", "frames/s"),
            ("network_ms", "network ms/frame"), ("filter_ms", "filter ms/frame"),
            ("filter_share_pct", "filter / network %"), ("target", "target")]),
        (lambda row: row["what"] == "memory", [
            ("frames", "frames"), ("size", "frame size"), ("render", "render"), ("peak_rss_mb", "peak RSS MB"),
            ("fps", "frames/s"), ("rss_growth_pct", "growth %"), ("target", "target")])],
    "video_encoding": [
        (lambda row: row["what"] == "flicker", [
            ("clip", "clip"), ("encoding", "written as"), ("frames", "frames"),
            ("flicker_truth", "flicker of the truth"), ("flicker_per_frame", "flicker, per frame"),
            ("flicker_temporal", "flicker, temporal (before encoding)"), ("flicker_written", "flicker, written file"),
            ("reduction_before_pct", "reduction before encoding %"), ("reduction_written_pct", "reduction in the file %"),
            ("kept_pct", "kept %"), ("kept_min_pct", "kept, worst clip %"), ("ab_change_mean", "ab change, mean"),
            ("ab_change_p99", "ab change, p99"), ("kb_per_frame", "KiB per frame"), ("write_fps", "writing frames/s"),
            ("target", "target")]),
        (lambda row: row["what"] == "fringe", [
            ("clip", "clip"), ("source", "ab from"), ("b_trailing", "b, band uncovered (trailing)"),
            ("b_leading", "b, band about to be covered (leading)"), ("b_far", "b, 30 px or more away"),
            ("band_pct", "trailing band, % of the frame")])],
    "scale": [
        (lambda row: row["what"] == "folder", [
            ("files", "files"), ("list_s", "listing s"), ("scan_cold_s", "scan cold s"),
            ("scan_cold_files_s", "scan cold files/s"), ("scan_cached_s", "scan cached s"), ("cache_mb", "cache MB"),
            ("cache_load_s", "cache load s"), ("scan_peak_rss_mb", "scan peak RSS MB"),
            ("startup_stage1_cold_s", "start-up, stage 1, cold s"),
            ("startup_stage2_cached_s", "start-up, stage 2 after stage 1 s")]),
        (lambda row: row["what"] == "start-up floor", [
            ("what", "what"), ("photos", "photos"), ("startup_stage2_s", "start-up, stage 2 s")]),
        (lambda row: row["what"] == "workers", [
            ("paths", "paths"), ("workers", "workers"), ("batch", "batch"),
            ("main_private_mb", "main private MB (first / last batch)"),
            ("worker0_private_mb", "worker 0 private MB"), ("worker1_private_mb", "worker 1 private MB"),
            ("main_rss_mb", "main RSS MB"), ("worker0_rss_mb", "worker 0 RSS MB"),
            ("worker1_rss_mb", "worker 1 RSS MB")]),
        (lambda row: row["what"] == "evaluate", [
            ("images", "images scored"), ("seconds", "seconds"), ("peak_rss_mb", "peak RSS MB"),
            ("rss_mb", "RSS MB"), ("metrics_csv_mb", "metrics.csv MB")]),
        (lambda row: row["what"] == "per image", [
            ("size", "crop"), ("decode_crop_img_s_per_core", "decode + crop img/s per core"),
            ("scan_check_files_s_per_core", "scan check files/s per core"),
            ("pretrain_gflop_per_img", "stage 1 GFLOP per image"), ("gan_gflop_per_img", "stage 2 GFLOP per image")]),
        (lambda row: row["what"] == "projection", [
            ("stage", "PROJECTION (not measured)"), ("gpus_img_s", "8 GPUs img/s (assumed TFLOP/s)"),
            ("node_loader_img_s", "node decode img/s (measured per core)"), ("bound_by", "bound by"),
            ("epoch_minutes", "ImageNet epoch, minutes")])],
    "startup": [(None, [
        ("command", "command"), ("tree", "tree"), ("wall_s", "median s"), ("wall_min_s", "fastest s"),
        ("wall_max_s", "slowest s"), ("cpu_s", "CPU s (median)"), ("repeats", "runs")])],
    "checkpoint_write": [(None, [
        ("stage", "stage"), ("size_mb", "size MB"), ("write_s", "write s"), ("write_mb_s", "write MB/s"),
        ("load_s", "load s"), ("overhead_pct", "overhead %")])],
    "viz_cost": [(None, [
        ("size", "size"), ("batch", "batch"), ("step_s", "step s"), ("viz_s", "viz s"),
        ("viz_in_steps", "viz in steps"), ("overhead_pct", "overhead %"), ("report_layers_s", "report layers s")])],
    "shards": [(None, [
        ("what", "what"), ("files", "files"), ("shards", "shards"), ("seconds", "seconds"), ("files_s", "files/s"),
        ("mb_s", "MB/s"), ("crop", "crop"), ("workers", "workers"), ("samples_s", "samples/s"),
        ("rounds", "samples/s per round"), ("vs_folder", "shards / folder"),
        ("cpu_ms_per_sample", "CPU ms per sample (in-process)"), ("cpu_vs_folder", "CPU shards / folder"),
        ("load_1min", "load (1 min)")])],
    "split": [
        (lambda row: row["what"] == "stability", [
            ("rule", "rule"), ("files", "files"), ("change", "change"), ("val_before", "validation files before"),
            ("val_after", "after"), ("val_to_train", "validation -> training"),
            ("train_to_val", "training -> validation")]),
        (lambda row: row["what"] == "cost", [
            ("files", "files"), ("split_by_path_s", "split by path hash s"),
            ("split_by_position_s", "split by position s"), ("path_hashes_s", "hashing alone s"),
            ("stage2_check_s", "stage 2's check s"), ("training_set_mb", "training set in checkpoint MB")])],
    "head_cost": [
        (lambda row: row["what"].startswith("train"), [
            ("what", "what"), ("size", "size"), ("batch", "batch"), ("amp", "amp"), ("img_s", "img/s"),
            ("ms_per_batch", "ms per batch"), ("vs_regression", "vs regression"), ("peak_rss_mb", "peak RSS MB"),
            ("gpu_peak_mb", "GPU peak MB")]),
        (lambda row: not row["what"].startswith("train"), [
            ("what", "what"), ("size", "size"), ("batch", "batch"), ("ms_per_batch", "ms per batch"),
            ("img_s", "img/s")])],
    "generators": [(None, [
        ("generator", "generator"), ("size", "px"), ("batch", "batch"), ("amp", "amp"), ("parameters", "parameters"),
        ("gmacs", "GMACs (one forward, batch 1)"), ("train_img_s", "stage-1 train img/s"),
        ("vs_resnet18", "vs resunet-resnet18"), ("peak_rss_mb", "peak RSS MB")])],
    "hint_update": [
        (lambda row: row["what"] == "update", [
            ("engine", "engine"), ("update_s", "s per update (640 x 480, render 256, 3 hints)"),
            ("de2000_mean", "CIEDE2000 mean vs fp32"), ("de2000_p99", "CIEDE2000 p99"),
            ("within_int8_limits", "within the int8 limits")])],
    "hint_curve": [(None, [
        ("hints", "oracle hints"), ("psnr", "PSNR"), ("delta_e2000", "CIEDE2000"),
        ("vs_no_hints", "CIEDE2000 vs none"), ("vs_gray", "CIEDE2000 vs gray (ab = 0)")])],
    "published": [(None, [
        ("model", "model"), ("render", "render px"), ("parameters", "parameters"),
        ("network_s", "network s (batch 1)"), ("photo_s", "s per 640 x 480 photo"), ("vs_ours", "vs ours"),
        ("peak_rss_mb", "peak RSS MB")])],
}


def fmt(value) -> str:
    """One cell: 2 decimals in the usual range, whole numbers from 100, 3 significant digits below 1."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:#.3g}"
    if isinstance(value, list):
        return " / ".join(fmt(v) for v in value)
    return "" if value is None else str(value).replace("|", "\\|")


def cell(value, format=fmt) -> str:
    return "" if value is None else format(value)


def table(rows: list[dict], preferred: list[tuple[str, str]]) -> str:
    """A markdown table of the rows: the preferred columns that occur, then every other key that has a value."""
    keys = [k for r in rows for k in r if r[k] is not None]  # a column of nothing but None (no GPU) is left out
    columns = [(k, h, *f) for k, h, *f in preferred if k in keys]
    named = {c[0] for c in columns}
    columns += [(k, k) for k in dict.fromkeys(keys) if k not in named]
    lines = ["| " + " | ".join(c[1] for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c[0]), *c[2:]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def provenance(path: Path, data: dict) -> str:
    """The line beside each table: which file, which machine, when, which code, and how loaded the machine was."""
    m, run = data["machine"], data["run"]
    memory = f", {m['memory_gb']:g} GB" if "memory_gb" in m else ""
    if "isa" in m:  # recorded since 2026-12-07: one model name came with and without AVX-512
        memory += f", {' '.join(m['isa']) or 'no AVX2'}"
    commit = (run["git_commit"] or "?")[:10] + (" + uncommitted changes" if run["git_dirty"] else "")
    others = {k: v for k, v in data.items() if k not in ("machine", "run", "rows")}
    text = (f"_`bench/results/{path.name}`, measured {run['date']} on {m['cpu']} ({m['cores']} cores{memory}, "
            f"{m.get('gpu', 'no GPU')}, {m['threads']} torch threads); torch {run['torch']}, Python {run['python']}, "
            f"commit {commit}; 1-minute load average {fmt(run['load_1min_start'])} at start, "
            f"{fmt(run['load_1min_end'])} at end")
    if others:
        text += "; also in the file: " + ", ".join(f"{k} {fmt(v)}" for k, v in others.items())
    return text + "._"


def render(path: Path) -> str:
    """One results file as its provenance line and its table(s)."""
    data = json.loads(path.read_text())
    bench = path.stem.rsplit("-", 1)[0]
    spec = TABLES.get(bench) or TABLES.get(bench.split("_")[0]) or [(None, [])]
    parts = [provenance(path, data)]
    for keep, columns in spec:
        rows = [r for r in data["rows"] if keep is None or keep(r)]
        if rows:
            parts.append(table(rows, columns))
    return "\n\n".join(parts)


def render_all(results: Path = RESULTS) -> dict[str, str]:
    """{"bench:NAME": markdown} for every results file NAME.json."""
    return {f"bench:{path.stem}": render(path) for path in sorted(results.glob("*.json"))}


def docs_generate():
    """docs/generate.py, which owns the page regions (find, rewrite); loaded by path, as docs/ is no package."""
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    generate, tables = docs_generate(), render_all()
    missing = sorted(set(tables) - set(generate.region_bodies(PAGE.read_text())))
    if missing:
        raise SystemExit(f"error: {PAGE.relative_to(ROOT)} has no region for {', '.join(missing)}: add a "
                         f"'<!-- NAME -->' line and a '<!-- /NAME -->' line where each table goes")
    changed = generate.update_file(PAGE, tables)
    print(f"{'rewrote' if changed else 'unchanged:'} {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
