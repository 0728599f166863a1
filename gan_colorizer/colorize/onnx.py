"""Export a checkpoint's generator to ONNX: `python -m gan_colorizer.colorize.onnx --checkpoint CKPT --out OUT.onnx`.

The ONNX model maps gray_l (N, 1, H, W) float32 in model units (L / 50 - 1) to ab (N, 2, H, W) in model units
(a, b / 110); N, H and W are dynamic, H and W multiples of 32 (of 256 for the pix2pix U-Net). A hint model (trained
with --hints) has a second input, hints (N, 3, H, W): hints.model_input's hinted ab / 110 and mask (zeros: the
automatic mode); its metadata says so under "hints". Everything
around it (Lab conversion, render-size resize, full-resolution recombination) stays with the caller;
docs/colorizing.md (ONNX export) has a numpy sketch.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from gan_colorizer.colorize.engines import INSTALL_EXPORT, OnnxNetwork, require
from gan_colorizer.colorize.int8 import KEEP_FLOAT, MAX_CHANGE, METHODS, WEIGHT_BITS, WORST_FACTOR
from gan_colorizer.errors import UserError
from gan_colorizer.options import REQUIRED, opt, parse_options, tool_parser

OPSET = 17
DYNAMIC = {0: "batch", 2: "height", 3: "width"}


def export_onnx(generator: torch.nn.Module, path, multiple: int = 32, opset: int = OPSET, metadata=None) -> Path:
    """Write generator (eval mode, fp32, CPU) to path as ONNX with dynamic batch and spatial size, atomically.

    torch's TorchScript-based exporter is used (deprecated since torch 2.9, still in 2.14): the dynamo exporter
    needs onnxscript, which is not a dependency here (it failed on fastai's TensorBase outputs, which the
    generators no longer return, so it may work once onnxscript is installed; not tried).
    Tracing turns the U-Net's "resize when skip shapes differ" branches into constants; they never fire for
    sides that are multiples of `multiple`, which is the input contract of the exported model.
    """
    import torch  # here, not at the top: the module's --help answers without it
    from gan_colorizer.hints import CHANNELS
    path = Path(path)
    generator = generator.float().cpu().eval()
    example = torch.zeros(1, 1, 2 * multiple, 3 * multiple) if multiple < 256 else torch.zeros(1, 1, 256, 256)
    inputs = ["gray_l", "hints"] if takes_hints(generator) else ["gray_l"]
    examples = (example, example.new_zeros(1, CHANNELS, *example.shape[2:]))[:len(inputs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on those branches, the exporter's deprecation note
            torch.onnx.export(generator, examples, str(tmp), input_names=inputs, output_names=["ab"],
                              dynamic_axes={name: DYNAMIC for name in [*inputs, "ab"]}, opset_version=opset,
                              dynamo=False)
        if metadata:
            from gan_colorizer.colorize.onnx_graph import add_metadata
            add_metadata(tmp, metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def takes_hints(generator) -> bool:
    """Whether the network reads hint channels beside gray_l (trained with --hints): its export takes them too."""
    return bool(getattr(generator, "takes_hints", False))


def model_metadata(cfg, multiple: int, decoding: str | None = None) -> dict:
    """What engines.OnnxNetwork needs to run the model as the torch path does (and a reader to use it by hand)."""
    from gan_colorizer.color import AB_SCALE, L_SCALE
    hints = {"hints": f"hinted ab / {AB_SCALE:g} (2 channels, 0 where no hint), then the mask (1 where a colour is "
                      f"given), (N, 3, H, W) float32 at gray_l's size; zeros: automatic"} if cfg.model.hints else {}
    if cfg.model.head == "classification" and decoding is None:
        decoding = f"annealed mean, T = {cfg.model.annealed_t:g}"
    decoded = f" ({decoding} of the {cfg.model.head} head's distribution)" if decoding else ""
    return {"input": f"gray_l = L / {L_SCALE:g} - 1, (N, 1, H, W) float32, H and W multiples of {multiple}",
            "output": f"ab / {AB_SCALE:g}, (N, 2, H, W) float32{decoded}", "generator": cfg.model.generator,
            "backbone": cfg.model.backbone, "head": cfg.model.head, "size_multiple": multiple, "stage": cfg.stage,
            "l_scale": L_SCALE, "ab_scale": AB_SCALE, **({"decoding": decoding} if decoding else {}), **hints}


def check_onnx(path, generator: torch.nn.Module, shapes, atol: float = 1e-3) -> float:
    """Max |ONNX - PyTorch| over random inputs of the given (N, H, W) shapes (a hint model's with random hint maps,
    a few hinted squares each); raises when above atol."""
    import numpy as np
    import onnxruntime
    import torch
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n, h, w in shapes:
        inputs = {"gray_l": torch.rand(n, 1, h, w) * 2 - 1}
        if takes_hints(generator):
            inputs["hints"] = random_hints(n, h, w)
        with torch.inference_mode():
            expected = generator(*inputs.values()).numpy()
        got = session.run(["ab"], {k: v.numpy() for k, v in inputs.items()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > atol:
        raise UserError(f"{path}: ONNX and PyTorch outputs differ by {worst:.2e} (> {atol:g})")
    return worst


def random_hints(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Hint channels (N, 3, H, W) of a few squares per photo, simulated (hints.sample) from random ab: a check input."""
    import torch

    from gan_colorizer.hints import model_input, sample
    generator = torch.Generator().manual_seed(seed)
    real_ab = (torch.rand(n, 2, h, w, generator=generator) * 2 - 1) * 80
    return model_input(*sample(real_ab, [4] * n, generator))


@dataclass
class ExportOptions:
    """The flags of the export command."""
    checkpoint: str = opt(REQUIRED, "stage-1 or stage-2 checkpoint", metavar="CKPT")
    out: str = opt(REQUIRED, "where to write the ONNX model", metavar="OUT.onnx", aliases=("--onnx",))
    opset: int = opt(OPSET, "ONNX opset")
    no_check: bool = opt(False, "skip comparing the export with PyTorch in onnxruntime on fresh random inputs",
                         action="store_true")
    int8: bool = opt(False, "write a statically quantized int8 model (needs --calibration): for --engine onnx-int8",
                     action="store_true")
    calibration: str | None = opt(None, "--int8: folder of photos like those you will colorize (the ranges of "
                                        "int8 come from them)", metavar="DIR")
    calibration_count: int = opt(200, "--int8: photos of --calibration used at most (16-64 varied ones are enough; "
                                      "each costs time in calibration and in the check)", metavar="N")
    calibration_method: str = opt("minmax", "--int8: how activation ranges are chosen", choices=tuple(METHODS))
    image_size: int = opt(256, "--int8: short side the calibration photos are seen at (colorize.py's --image-size)",
                          metavar="N", aliases=("--render-size",))
    weight_bits: str = opt("auto", "--int8: bits of the int8 weights; auto: 8 on a CPU with VNNI (AVX512-VNNI, "
                                   "AVX-VNNI), 7 on one without, where 8 saturate (choose 7 for a file that may run "
                                   "on other CPUs)", choices=WEIGHT_BITS)
    keep_float: list[str] = opt(KEEP_FLOAT, "--int8: ONNX node names (or prefixes) kept in fp32",
                                nargs="*", metavar="NODE")
    max_change: float = opt(MAX_CHANGE, "--int8: refuse the model (nothing written) when int8 moves ab from fp32 by "
                                        f"more than this on average over the calibration photos, or {WORST_FACTOR:g}x "
                                        "this on the worst one (Lab units); 0: no limit", metavar="LAB")


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(ExportOptions, __doc__, prog="python -m gan_colorizer.colorize.onnx")


def onnx_from_generator(generator: torch.nn.Module, cfg, decoding: str | None = None, threads=None) -> OnnxNetwork:
    """The torch generator exported in memory (fp32) and run in onnxruntime: --engine onnx with a .pt checkpoint."""
    import tempfile
    import warnings

    from gan_colorizer.colorize.inference import size_multiple
    # torch's exporter needs onnx (OnnxExporterError "Module onnx is not installed!" otherwise), the engine onnxruntime
    require(["onnx", "onnxruntime"], "--engine onnx with a PyTorch checkpoint", INSTALL_EXPORT)
    multiple = size_multiple(generator)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation note, printed once per process
        path = export_onnx(generator, Path(tmp) / "generator.onnx", multiple)
        data = path.read_bytes()
    meta = {k: str(v) for k, v in model_metadata(cfg, multiple, decoding).items()}
    return OnnxNetwork(data, meta, threads)


def main(argv=None) -> int:
    args = parse_options(build_parser(), ExportOptions, argv)
    from gan_colorizer.console import setup_logging
    setup_logging()
    try:
        if args.int8 and not args.calibration:
            raise UserError("--int8 needs --calibration DIR: a folder of photos like those you will colorize")
        if not (math.isfinite(args.max_change) and args.max_change >= 0):
            raise UserError(f"--max-change {args.max_change:g}: must be a number >= 0 (Lab units; 0: no limit)")
        if args.weight_bits != "auto" and not args.int8:
            raise UserError(f"--weight-bits {args.weight_bits}: only an --int8 model has int8 weights")
        if args.calibration and not args.int8:
            raise UserError(f"--calibration {args.calibration}: calibration photos are for --int8 only (add --int8 "
                            f"for an int8 model, or leave --calibration out for fp32)")
        # torch's exporter needs onnx; onnxruntime checks the export and quantizes it
        require(["onnx"] + (["onnxruntime"] if args.int8 or not args.no_check else []), "exporting to ONNX",
                INSTALL_EXPORT)
        export_command(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ImportError as e:
        print(f"error: {e.name or e} is not installed: {INSTALL_EXPORT} (onnx, onnxruntime)", file=sys.stderr)
        return 2
    return 0


def export_command(args) -> None:
    """Export (and check) the fp32 model; with --int8 quantize it, calibrated on --calibration, into --out."""
    import tempfile

    from gan_colorizer.models.registry import load_generator
    from gan_colorizer.colorize.inference import size_multiple
    from gan_colorizer.models import registry
    from gan_colorizer.models.classifier import set_decoding
    registry.refuse(args.checkpoint, "the ONNX export")
    generator, cfg, _ = load_generator(args.checkpoint, "cpu")
    multiple = size_multiple(generator)
    metadata = _metadata_or_none(cfg, multiple, set_decoding(generator))
    if args.int8:  # read the first calibration photo now: no photos, or none readable, is refused before exporting
        from gan_colorizer.colorize.int8 import calibration_inputs, export_int8
        expected, inputs = calibration_inputs(args.calibration, args.image_size, multiple, args.calibration_count,
                                              takes_hints(generator))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx" if args.int8 else args.out
        path = export_onnx(generator, fp32, multiple, args.opset, metadata)
        if not args.no_check:
            m = multiple
            diff = check_onnx(path, generator, [(1, 2 * m, 2 * m), (2, 3 * m, 4 * m)] if m < 256 else [(1, m, 2 * m)])
            print(f"checked in onnxruntime (fp32) at other batch and spatial sizes: max |diff| {diff:.1e}")
        if args.int8:
            path, changes = export_int8(path, args.out, inputs, expected, args, multiple)
            print(f"checked int8 against fp32 (ab moved, Lab units) on {'; on '.join(c.text() for c in changes)}")
    hints = " and hints (N, 3, H, W)" if takes_hints(generator) else ""
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{', int8' if args.int8 else ''}): gray_l (N, 1, H, W)"
          f"{hints} -> ab (N, 2, H, W), H and W multiples of {multiple}")


def _metadata_or_none(cfg, multiple: int, decoding=None):
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None  # torch writes the model without the onnx package; metadata needs it
    return model_metadata(cfg, multiple, decoding)


if __name__ == "__main__":
    sys.exit(main())
