"""Export a checkpoint's generator to ONNX: `python -m gan_colorizer.colorize.onnx --checkpoint CKPT --onnx OUT.onnx`.

The ONNX model maps gray_l (N, 1, H, W) float32 in model units (L / 50 - 1) to ab (N, 2, H, W) in model units
(a, b / 110); N, H and W are dynamic, H and W multiples of 32 (of 256 for the pix2pix U-Net). Everything
around it (Lab conversion, render-size resize, full-resolution recombination) stays with the caller;
docs/colorizing.md (ONNX export) has a numpy sketch.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from gan_colorizer.errors import UserError
from gan_colorizer.options import REQUIRED, opt, parse_options, tool_parser

OPSET = 17
DYNAMIC = {0: "batch", 2: "height", 3: "width"}


def export_onnx(generator: torch.nn.Module, path, multiple: int = 32, opset: int = OPSET, metadata=None) -> Path:
    """Write generator (eval mode, fp32, CPU) to path as ONNX with dynamic batch and spatial size, atomically.

    torch's TorchScript-based exporter is used (deprecated since torch 2.9, still in 2.14): the dynamo exporter
    needs onnxscript, which is not a dependency here (it failed on fastai's TensorBase outputs, which
    networks.resunet now strips, so it may work once onnxscript is installed; not tried).
    Tracing turns DynamicUnet's "resize when skip shapes differ" branches into constants; they never fire for
    sides that are multiples of `multiple`, which is the input contract of the exported model.
    """
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
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.save(model, str(path))


def model_metadata(cfg, multiple: int) -> dict:
    from gan_colorizer.color import AB_SCALE, L_SCALE
    decoded = f" (annealed mean at T = {cfg.model.annealed_t:g} of the {cfg.model.head} head's distribution)" \
        if cfg.model.head == "classification" else ""
    return {"input": f"gray_l = L / {L_SCALE:g} - 1, (N, 1, H, W) float32, H and W multiples of {multiple}",
            "output": f"ab / {AB_SCALE:g}, (N, 2, H, W) float32{decoded}", "generator": cfg.model.generator,
            "backbone": cfg.model.backbone, "head": cfg.model.head, "size_multiple": multiple, "stage": cfg.stage}


def check_onnx(path, generator: torch.nn.Module, shapes, atol: float = 1e-3) -> float:
    """Max |ONNX - PyTorch| over random inputs of the given (N, H, W) shapes; raises when above atol."""
    import numpy as np
    import onnxruntime
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


@dataclass
class ExportOptions:
    """The flags of the export command."""
    checkpoint: str = opt(REQUIRED, "stage-1 or stage-2 checkpoint", metavar="CKPT")
    onnx: str = opt(REQUIRED, "where to write the ONNX model", metavar="OUT.onnx")
    opset: int = opt(OPSET, "ONNX opset")
    no_check: bool = opt(False, "skip comparing the export with PyTorch in onnxruntime on fresh random inputs",
                         action="store_true")


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(ExportOptions, __doc__, prog="python -m gan_colorizer.colorize.onnx")


def main(argv=None) -> int:
    args = parse_options(build_parser(), ExportOptions, argv)
    from gan_colorizer.console import setup_logging
    setup_logging()  # also silences fastai's import-time deprecation chatter
    try:
        from gan_colorizer.checkpoint import load_generator
        from gan_colorizer.colorize.inference import size_multiple
        generator, cfg, _ = load_generator(args.checkpoint, "cpu")
        multiple = size_multiple(generator)
        path = export_onnx(generator, args.onnx, multiple, args.opset, _metadata_or_none(cfg, multiple))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): gray_l (N, 1, H, W) -> ab (N, 2, H, W), "
              f"H and W multiples of {multiple}")
        if not args.no_check:
            m = multiple
            diff = check_onnx(path, generator, [(1, 2 * m, 2 * m), (2, 3 * m, 4 * m)] if m < 256 else [(1, m, 2 * m)])
            print(f"checked in onnxruntime at other batch and spatial sizes: max |diff| {diff:.1e}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ImportError as e:
        print(f"error: {e.name} is not installed: pip install 'gan_colorizer[export]' (onnx, onnxruntime)",
              file=sys.stderr)
        return 2
    return 0


def _metadata_or_none(cfg, multiple: int):
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None  # torch writes the model without the onnx package; metadata needs it
    return model_metadata(cfg, multiple)


if __name__ == "__main__":
    sys.exit(main())
