"""Export a checkpoint's generator to ONNX: `python -m gan_colorizer.colorize.onnx --checkpoint CKPT --out OUT.onnx`.

The ONNX model maps gray_l (N, 1, H, W) float32 in model units (L / 50 - 1) to ab (N, 2, H, W) in model units
(a, b / 110); N, H and W are dynamic, H and W multiples of 32 (of 256 for the pix2pix U-Net). Everything
around it (Lab conversion, render-size resize, full-resolution recombination) stays with the caller;
docs/colorizing.md (ONNX export) has a numpy sketch.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from gan_colorizer.colorize.engines import INSTALL_EXPORT, OnnxNetwork, require
from gan_colorizer.errors import UserError, reason
from gan_colorizer.options import REQUIRED, opt, parse_options, tool_parser

OPSET = 17
log = logging.getLogger(__name__)
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
    path = Path(path)
    generator = generator.float().cpu().eval()
    example = torch.zeros(1, 1, 2 * multiple, 3 * multiple) if multiple < 256 else torch.zeros(1, 1, 256, 256)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on those branches, the exporter's deprecation note
            torch.onnx.export(generator, (example,), str(tmp), input_names=["gray_l"], output_names=["ab"],
                              dynamic_axes={"gray_l": DYNAMIC, "ab": DYNAMIC}, opset_version=opset, dynamo=False)
        if metadata:
            _add_metadata(tmp, metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _add_metadata(path: Path, metadata: dict) -> None:
    import onnx
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.save(model, str(path))


def model_metadata(cfg, multiple: int, decoding: str | None = None) -> dict:
    """What engines.OnnxNetwork needs to run the model as the torch path does (and a reader to use it by hand)."""
    from gan_colorizer.color import AB_SCALE, L_SCALE
    if cfg.model.head == "classification" and decoding is None:
        decoding = f"annealed mean, T = {cfg.model.annealed_t:g}"
    decoded = f" ({decoding} of the {cfg.model.head} head's distribution)" if decoding else ""
    return {"input": f"gray_l = L / {L_SCALE:g} - 1, (N, 1, H, W) float32, H and W multiples of {multiple}",
            "output": f"ab / {AB_SCALE:g}, (N, 2, H, W) float32{decoded}", "generator": cfg.model.generator,
            "backbone": cfg.model.backbone, "head": cfg.model.head, "size_multiple": multiple, "stage": cfg.stage,
            "l_scale": L_SCALE, "ab_scale": AB_SCALE, **({"decoding": decoding} if decoding else {})}


def check_onnx(path, generator: torch.nn.Module, shapes, atol: float = 1e-3) -> float:
    """Max |ONNX - PyTorch| over random inputs of the given (N, H, W) shapes; raises when above atol."""
    import numpy as np
    import onnxruntime
    import torch
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n, h, w in shapes:
        gray_l = torch.rand(n, 1, h, w) * 2 - 1
        with torch.inference_mode():
            expected = generator(gray_l).numpy()
        got = session.run(["ab"], {"gray_l": gray_l.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > atol:
        raise UserError(f"{path}: ONNX and PyTorch outputs differ by {worst:.2e} (> {atol:g})")
    return worst


def calibration_inputs(folder, render_size: int, multiple: int, count: int):
    """Render-size gray_l (1, 1, h, w) numpy arrays of up to `count` readable photos of the folder, as colorize.py
    feeds them. The first one is read now: a folder without photos, or with none readable, is refused before any
    export; each unreadable photo is one warning line naming it and the reason."""
    import itertools

    from gan_colorizer.images import list_images
    paths = list_images(folder) if Path(folder).is_dir() else []
    if not paths:
        raise UserError(f"--calibration {folder}: no photos there (a folder of the photos you will colorize)")
    readable = (x for x in (_calibration_input(p, render_size, multiple) for p in paths) if x is not None)
    first = next(readable, None)
    if first is None:
        raise UserError(f"--calibration {folder}: none of its {len(paths)} photos is readable (each one's reason is "
                        f"above)")
    return itertools.islice(itertools.chain([first], readable), count)


def _calibration_input(path, render_size: int, multiple: int):
    """One photo's render-size gray_l, or None (and a warning line) when it cannot be read."""
    import numpy as np
    import torch

    from gan_colorizer.colorize.inference import downsample_l, full_res_l, render_shape
    from gan_colorizer.images import UnreadableImage, open_image, to_rgb8
    try:
        pixels = np.array(to_rgb8(open_image(path)))  # alpha on white: what the network sees (api.prepare)
    except UnreadableImage as e:
        log.warning("warning: skipped calibration photo %s", e)  # 'PATH: reason'
        return None
    except (OSError, ValueError) as e:
        log.warning("warning: skipped calibration photo %s: %s", path, reason(e))
        return None
    gray_l = full_res_l(torch.from_numpy(pixels).permute(2, 0, 1)[None])
    return downsample_l(gray_l, render_shape(*gray_l.shape[-2:], render_size, multiple)).numpy()


def quantize_int8(fp32_path, out_path, inputs, method: str = "minmax", keep_float=()) -> Path:
    """Static int8 (QDQ, per-channel int8 weights, uint8 activations) of an fp32 export, calibrated on `inputs`.

    keep_float: node names (or name prefixes) left in fp32. The metadata says how the model was quantized.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gan_colorizer.colorize.onnx_graph import widen_last_cross

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"gray_l": x}

    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    try:
        metadata = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}  # the tools may drop it
        # folds constants (the decoder's biases are computed at run time otherwise) and fuses BatchNorm into Conv
        quant_pre_process(str(fp32_path), str(tmp), skip_symbolic_shape=True)  # symbolic: incomplete on this graph
        model = onnx.load(str(tmp))
        widened = widen_last_cross(model)
        onnx.save(model, str(tmp))
        names = [n.name for n in model.graph.node]
        excluded = [n for n in names if any(n == k or n.startswith(k) for k in keep_float)]
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # the tools warn per node (a BatchNorm's weight has no channel axis 1...)
        try:
            # uint8 activations: with int8 ones (the tools' default) onnxruntime ran 13 of the 38 convolutions in fp32
            quantize_static(str(tmp), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=METHODS[method](CalibrationMethod), nodes_to_exclude=excluded)
        finally:
            root.setLevel(level)
        kept = f", fp32 kept: {' '.join(excluded)}" if excluded else ""
        wide = f", last cross widened by {widened} zero-weight channels" if widened else ""
        _add_metadata(tmp, {**metadata, "quantization": f"int8 static QDQ, per-channel int8 weights, uint8 "
                                                        f"activations, {method} calibration{wide}{kept}"})
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


METHODS = {"minmax": lambda m: m.MinMax, "entropy": lambda m: m.Entropy, "percentile": lambda m: m.Percentile}
KEEP_FLOAT = ()  # node-name prefixes left in fp32 by default: see docs/colorizing.md (int8) for the measurement


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
    calibration_count: int = opt(200, "--int8: photos of --calibration used at most", metavar="N")
    calibration_method: str = opt("minmax", "--int8: how activation ranges are chosen", choices=tuple(METHODS))
    image_size: int = opt(256, "--int8: short side the calibration photos are seen at (colorize.py's --image-size)",
                          metavar="N", aliases=("--render-size",))
    keep_float: list[str] = opt(KEEP_FLOAT, "--int8: ONNX node names (or prefixes) kept in fp32",
                                nargs="*", metavar="NODE")


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

    from gan_colorizer.checkpoint import load_generator
    from gan_colorizer.colorize.inference import size_multiple
    from gan_colorizer.networks import set_decoding
    generator, cfg, _ = load_generator(args.checkpoint, "cpu")
    multiple = size_multiple(generator)
    metadata = _metadata_or_none(cfg, multiple, set_decoding(generator))
    inputs = None
    if args.int8:  # read the first calibration photo now: no photos, or none readable, is refused before exporting
        inputs = calibration_inputs(args.calibration, args.image_size, multiple, args.calibration_count)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx" if args.int8 else args.out
        path = export_onnx(generator, fp32, multiple, args.opset, metadata)
        if not args.no_check:
            m = multiple
            diff = check_onnx(path, generator, [(1, 2 * m, 2 * m), (2, 3 * m, 4 * m)] if m < 256 else [(1, m, 2 * m)])
            print(f"checked in onnxruntime (fp32) at other batch and spatial sizes: max |diff| {diff:.1e}")
        if args.int8:
            path = quantize_int8(path, args.out, inputs, args.calibration_method, args.keep_float)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{', int8' if args.int8 else ''}): gray_l (N, 1, H, W) "
          f"-> ab (N, 2, H, W), H and W multiples of {multiple}")


def _metadata_or_none(cfg, multiple: int, decoding=None):
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None  # torch writes the model without the onnx package; metadata needs it
    return model_metadata(cfg, multiple, decoding)


if __name__ == "__main__":
    sys.exit(main())
