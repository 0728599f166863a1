"""Batch evaluation of checkpoints (and the gray baseline) on a held-out folder under a fixed protocol.

Files stream through DataLoader workers in batches; each batch is colorized by every model and scored on the
device, and only per-image numbers stay in memory, so memory does not grow with the folder.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from gan_colorizer.color import gray_rgb, lab_to_model, to_uint8
from gan_colorizer.colorize.api import Colorizer
from gan_colorizer.colorize.inference import colorize_l, render_shape, size_multiple
from gan_colorizer.console import Progress
from gan_colorizer.errors import UserError, reason
from gan_colorizer.evaluate import hint_curve
from gan_colorizer.evaluate.clips import ClipEvaluation, list_clips, print_clip_table
from gan_colorizer.evaluate.theirs import print_beside_ours
from gan_colorizer.evaluate.lpips_fid import load_fid, load_lpips
from gan_colorizer.evaluate.options import FULL_RES_MAX_PIXELS, PROTOCOLS, EvalOptions
from gan_colorizer.evaluate.outputs import Report
from gan_colorizer.evaluate.protocols import (
    EvalDataset,
    categories,
    collate,
    make_labels,
    resolve_data,
    single_images,
)
from gan_colorizer.data.benchmarks import benchmark, match_files
from gan_colorizer.data.images import MAX_PIXELS
from gan_colorizer.inspect.class_views import head_info
from gan_colorizer.metrics import (
    GRAY,
    FeatureMoments,
    colorfulness,
    frechet_distance,
    image_lab,
    image_metrics,
    sqrtm_psd,
)
from gan_colorizer.models import registry
from gan_colorizer.models.registry import load_generator
from gan_colorizer.runtime import Runtime, resolve_workers

log = logging.getLogger("gan_colorizer")
METRIC_NOTES = {  # written into summary.json, so a results file says how its numbers were made
    "images": "8-bit sRGB: the prediction after Lab -> sRGB, gamut clipping and rounding, against the truth",
    "psnr": "20 log10(255 / RMSE) over R, G, B; identical images are inf, left out of the statistics",
    "ssim": "Wang et al. 2004 per RGB channel: Gaussian sigma 1.5 (11 taps), K1 0.01, K2 0.03, border cropped",
    "delta_e2000": "CIEDE2000 (Sharma et al. 2005), Lab D65 / 2 degrees, mean over pixels",
    "colorfulness": "Hasler & Suesstrunk 2003 with rg = |R - G|, yb = |(R + G) / 2 - B|",
    "auc_ab": "Zhang et al. 2016: share of pixels with ab L2 error <= t, integrated over t in [0, 150] (trapezoid, "
              "step 1) / 150; before 2026-11-30 the mean over t = 0, 10, ..., 150, which read 1-3 points lower",
    "lpips": "Zhang et al. 2018, v0.1, AlexNet",
    "fid": "Heusel et al. 2017; pytorch-fid's TF Inception pool3 (bilinear 299 px) against this set's truth",
}


@dataclass
class Candidate:
    """One row of the results: a generator from a checkpoint, or the gray baseline (generator None)."""
    label: str
    generator: torch.nn.Module | None = None
    checkpoint: str | None = None
    info: dict = field(default_factory=dict)
    multiple: int = 32
    published: object | None = None  # a published model's Colorizer (models/registry.py), generator None
    hints: int | None = None  # --hints: the oracle hints this row gives each photo (hint_curve.py)
    base: str | None = None  # and the model's own label


def load_candidates(opts: EvalOptions, rt: Runtime) -> list[Candidate]:
    """The gray baseline, then every checkpoint's generator, rebuilt from the config stored in it."""
    candidates = [Candidate(GRAY, info={"model": "ab = 0 (the ground truth's L only)"})]
    given = make_labels(opts.checkpoints, opts.labels) if opts.labels else None  # a wrong count fails before loading
    loaded = [registry.load_network(path, "cpu", opts.weights, opts.download, ours=load_generator)
              for path in opts.checkpoints]
    labels = given or make_labels(opts.checkpoints, None, [None if isinstance(one, registry.Loaded) else one[1].run.name
                                                           for one in loaded])
    for label, path, one in zip(labels, opts.checkpoints, loaded):
        if isinstance(one, registry.Loaded):
            candidates.append(published_candidate(label, one, rt))
            continue
        generator, cfg, ckpt = one
        info = {"stage": ckpt.get("stage"), "step": ckpt.get("step"), "generator": cfg.model.generator,
                "backbone": cfg.model.backbone if cfg.model.generator == "resunet" else None,
                "trained_image_size": cfg.data.image_size, "weights": ckpt.get("weights_used", "raw"),
                **head_info(generator, ckpt, opts.decode, opts.annealed_t)}
        candidates.append(Candidate(label, rt.place(generator).eval(), str(path), info, size_multiple(generator)))
    return candidates


def published_candidate(label: str, loaded, rt: Runtime) -> Candidate:
    """A published model's row: what summary.json records of it (source, weight file and its SHA-256, render size)."""
    model = loaded.model
    info = {"published": model.name, "source": model.source, "paper": model.paper, "licence": model.licence,
            "weights_file": str(loaded.file), "weights_sha256": loaded.sha256(), "render_size": model.render_size}
    return Candidate(label, None, model.name, info, published=Colorizer(loaded, rt))


@torch.inference_mode()
def predict(cand: Candidate, gray_l: torch.Tensor, render_size: int, rt: Runtime, hints=None) -> torch.Tensor:
    """The candidate's 8-bit sRGB prediction for gray_l (model units) at its full size: ab = 0 for the gray
    baseline, else ab predicted at render size (with a hint model's hint channels there) and recombined with this L
    (inference.colorize_l)."""
    if cand.published is not None:  # at its own render size, whatever --image-size says
        return to_uint8(cand.published.pipeline.colorize_l(gray_l, hints))
    if cand.generator is None:
        return gray_rgb(gray_l)
    return to_uint8(colorize_l(cand.generator, gray_l, render_size, rt, cand.multiple, hints=hints))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Evaluator:
    """Owns the models, the metric networks and the running results; `run()` streams the data once."""

    def __init__(self, opts: EvalOptions):
        self.opts = opts
        self._check(opts)
        self.rt = Runtime(opts.device, opts.amp, channels_last=True)
        self.benchmark = benchmark(opts.benchmark) if opts.benchmark else None
        clip_paths, clip_names = list_clips(opts.data, opts.limit) if self.benchmark is None else ([], [])
        self.paths, self.names = (match_files(self.benchmark, opts.data) if self.benchmark
                                  else resolve_data(opts.data, allow_empty=bool(clip_paths)))
        self.hint_counts = hint_curve.parse_counts(opts.hints)
        if self.hint_counts is not None and clip_paths:
            raise UserError(f"--hints: oracle hints are for photos; {clip_paths[0]} is a video clip")
        self.candidates = hint_curve.expand(load_candidates(opts, self.rt), self.hint_counts)
        self.weights, self.unavailable = {}, {}  # metric -> weight file, or -> why it is not computed
        self.lpips = self._metric_net("lpips", *load_lpips(opts.lpips_weights, opts.download))
        self.fid = self._metric_net("fid", *load_fid(opts.fid_weights, opts.download))
        labels = [c.label for c in self.candidates]
        self.moments = {label: FeatureMoments() for label in labels + ["truth"]} if self.fid else {}
        self.seconds = dict.fromkeys(labels, 0.0)
        self.n_eval = min(len(self.paths), opts.limit or len(self.paths))
        self.report = Report(opts, labels, self.names, self.n_eval, self.candidates, self.rt,
                             categories(self.names[: self.n_eval]))
        self.skipped: list[tuple[int, str]] = []
        self.n_images = 0
        self.clips = ClipEvaluation(clip_paths, clip_names, self.candidates, opts, self.rt, self.report, self.lpips)

    @staticmethod
    def _check(opts: EvalOptions) -> None:
        checks = [(opts.protocol in PROTOCOLS, f"--protocol {opts.protocol}: use one of {', '.join(PROTOCOLS)}"),
                  (opts.image_size >= 16, f"--image-size {opts.image_size}: must be at least 16"),
                  (opts.batch_size > 0, "--batch-size must be > 0"),
                  (opts.limit is None or opts.limit > 0, "--limit must be > 0"),
                  (opts.max_pixels is None or opts.max_pixels >= 1, "--max-pixels must be >= 1"),
                  (opts.num_workers >= -1, "--num-workers must be >= 0, or -1 for auto"),
                  (opts.grid_images >= 0, "--grid-images must be >= 0"),
                  (opts.report_images >= 0 and opts.report_worst >= 0, "--report-images and --report-worst must be >= 0"),
                  (opts.annealed_t is None or opts.annealed_t > 0, f"--annealed-t {opts.annealed_t}: must be > 0"),
                  (0 <= opts.temporal <= 1, f"--temporal {opts.temporal}: use 0 (per frame) to 1")]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def _metric_net(self, name: str, net, note: str):
        if net is None:
            log.info("note: %s not computed: %s", name, note)
            self.unavailable[name] = note
            return None
        self.weights[name] = note
        return net.to(self.rt.device)

    def loader(self) -> DataLoader:
        full_res = self.opts.protocol == "full-res"  # sizes differ: one photo at a time, memory bounded by one
        o = self.opts
        max_pixels = o.max_pixels or (FULL_RES_MAX_PIXELS if full_res else MAX_PIXELS)
        dataset = EvalDataset(self.paths[: self.n_eval], o.protocol, o.image_size, max_pixels)
        workers = min(resolve_workers(self.opts.num_workers, self.rt.device), len(dataset))
        return DataLoader(dataset, batch_size=1 if full_res else self.opts.batch_size, shuffle=False,
                          num_workers=workers, collate_fn=collate, pin_memory=self.rt.device.type == "cuda",
                          prefetch_factor=2 if workers else None)

    @torch.inference_mode()
    def run(self, on_batch=None) -> dict:
        """Stream the data once; on_batch(n_images_so_far) is called after each batch (progress, memory probes).
        A run that fails leaves no half-written metrics.csv and releases --out."""
        try:
            return self._run(on_batch)
        except BaseException:
            self.report.abandon()
            raise

    def _run(self, on_batch) -> dict:
        start = time.perf_counter()
        if self.n_eval:
            log.info("evaluating %d images from %s (%s, %d px) with %s on %s", self.n_eval, self.opts.data,
                     self.opts.protocol, self.opts.image_size, ", ".join(c.label for c in self.candidates), self.rt.device)
        progress = Progress(self.n_eval, "evaluate", "img", shows=self.n_eval > 0)  # off a terminal: a line every 30 s
        try:
            for batch in self.loader() if self.n_eval else ():
                for index, why in batch["failed"]:
                    self._skip(index, why)
                if batch["pixels"] is not None:
                    self._score_or_skip(batch)
                    if on_batch:
                        on_batch(self.n_images)
                progress.update(len(batch["index"]) + len(batch["failed"]))
            progress.close()
            self.clips.run()
        finally:
            progress.close()
            self.report.close()
        if self.n_images == 0 and not self.clips.entries:
            raise UserError(f"--data {self.opts.data}: none of the {self.n_eval + len(self.clips.paths)} image or "
                            f"video files could be read")
        summary = self.report.finish(self._summary(time.perf_counter() - start))
        if self.hint_counts is not None:
            hint_curve.print_curves(summary["hints"]["curves"])
        if self.clips.paths:
            print_clip_table(summary["clips"])
        if self.benchmark:
            print_beside_ours(summary)
        return summary

    def _skip(self, index: int, reason: str) -> None:
        log.warning("warning: skipped %s: %s", self.paths[index], reason)
        self.skipped.append((index, reason))

    def _score_or_skip(self, batch: dict) -> None:
        """_score, or when the batch fails (out of memory...) each image alone: one that fails is skipped with one
        line and the set goes on."""
        try:
            self._score(batch)
        except (RuntimeError, MemoryError, ValueError) as e:
            if len(batch["index"]) > 1:
                for one in single_images(batch):
                    self._score_or_skip(one)
                return
            self._skip(batch["index"][0], f"cannot colorize or score it ({reason(e)})")

    def _render_shape(self, cand: Candidate, gray_l: torch.Tensor) -> tuple[int, int]:
        if cand.published is not None:
            return cand.published.pipeline.render_shape(*gray_l.shape[-2:])
        return render_shape(*gray_l.shape[-2:], self.opts.image_size, cand.multiple)

    def _predict(self, cand: Candidate, gray_l: torch.Tensor, hints=None) -> torch.Tensor:
        _sync(self.rt.device)
        clock = time.perf_counter()
        pred = predict(cand, gray_l, self.opts.image_size, self.rt, hints)
        _sync(self.rt.device)
        self.seconds[cand.label] += time.perf_counter() - clock
        return pred

    def _score(self, batch: dict) -> None:
        """Colorize one batch with every candidate, score it, and hand everything to the report."""
        truth = batch["pixels"].to(self.rt.device, non_blocking=True)
        truth_lab = image_lab(truth)
        gray_l, truth_ab = lab_to_model(truth_lab)  # the model sees the truth's L only (and oracle hints from ab)
        preds, scores = {}, {}
        for cand in self.candidates:
            hints = None if not cand.hints else hint_curve.oracle(
                truth_ab, batch["index"], cand.hints, self.opts.hint_seed, self._render_shape(cand, gray_l))
            preds[cand.label] = self._predict(cand, gray_l, hints)
            scores[cand.label] = image_metrics(preds[cand.label], truth, truth_lab)
            if self.lpips is not None:
                scores[cand.label]["lpips"] = self.lpips(preds[cand.label].float() / 255, truth.float() / 255)
        if self.fid is not None:  # every feature first: a failure leaves the running moments as they were
            features = [(label, self.fid(images.float() / 255)) for label, images in [("truth", truth), *preds.items()]]
            for label, feats in features:
                self.moments[label].update(feats)
        self.n_images += truth.shape[0]
        self.report.add(batch, truth, truth_lab, preds, scores, colorfulness(truth))

    def _fid(self) -> dict:
        if self.fid is None:
            return dict.fromkeys(self.seconds)
        if self.n_images < 2:
            self.unavailable["fid"] = "needs at least 2 images (a covariance)"
            return dict.fromkeys(self.seconds)
        mu, sigma = self.moments["truth"].stats()
        root = sqrtm_psd(sigma)  # once for every label
        return {label: frechet_distance(mu, sigma, *self.moments[label].stats(), root1=root) for label in self.seconds}

    def _hint_summary(self, fids: dict) -> dict:
        """--hints: every metric against the number of oracle hints per model, and its plot."""
        r = self.report
        curves = hint_curve.curve(self.candidates, r.values, r.measured, r.count, fids)
        return {**hint_curve.summary(self.hint_counts, self.opts.hint_seed, curves),
                "plot": hint_curve.plot(curves, r.out)}

    def _summary(self, elapsed: float) -> dict:
        o = self.opts
        models = {}
        fids = self._fid()
        for cand in self.candidates:
            seconds = self.seconds[cand.label]
            models[cand.label] = {"checkpoint": cand.checkpoint, **cand.info, "fid": fids[cand.label],
                                  "img_per_sec": self.n_images / seconds if seconds else None}
        precision = "fp32" if self.rt.amp_dtype is None else f"{self.rt.amp_name} autocast (--amp {o.amp})"
        protocol = {"name": o.protocol, "image_size": o.image_size,
                    "description": PROTOCOLS[o.protocol].replace("SIZE", str(o.image_size)),
                    "resample": "PIL bicubic (antialiased); ab upsampled bicubic", "precision": precision,
                    "metrics": METRIC_NOTES}
        skipped = [{"path": str(self.paths[i]), "reason": r} for i, r in self.skipped]  # clips': clips.skipped
        clips = {"clips": self.clips.summary()} if self.clips.paths else {}
        bench = {"benchmark": self.benchmark.summary(o.protocol, o.image_size, self.n_images)} if self.benchmark else {}
        hinted = {"hints": self._hint_summary(fids)} if self.hint_counts is not None else {}
        return {"protocol": protocol, **bench, **hinted, "data": o.data, "n_images": self.n_images, "n_files": self.n_eval,
                "skipped": skipped, "models": models, **clips,
                "unavailable": self.unavailable, "weights": self.weights, "device": str(self.rt.device),
                "elapsed_s": elapsed}


def evaluate(opts: EvalOptions, on_batch=None) -> dict:
    """Run the evaluation and write metrics.csv, summary.json and grids/ (and images/) into opts.out."""
    return Evaluator(opts).run(on_batch)
