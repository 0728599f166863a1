"""Engines: what maps render-size gray_l to ab. torch runs the checkpoint's generator; onnx and onnx-int8 run an
exported model in onnxruntime. Everything around that one call (Lab, resizing, mood controls, files) is shared."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gan_colorizer.errors import UserError

ENGINES = ("torch", "onnx", "onnx-int8")
EXPORT = "python -m gan_colorizer.colorize.onnx --checkpoint CKPT --onnx OUT.onnx"


class OnnxNetwork:
    """An ONNX generator in onnxruntime, called as the torch generator is: gray_l (N, 1, H, W) -> ab (N, 2, H, W)."""

    def __init__(self, model, metadata: dict, threads: int | None = None):
        """model: a file path or the serialized bytes; metadata: model_metadata's keys (as strings)."""
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                                    providers=["CPUExecutionProvider"])
        self.metadata = metadata
        self.multiple = int(metadata["size_multiple"])
        self.decoding = metadata.get("decoding") or None
        self.int8 = "quantization" in metadata

    def __call__(self, gray_l: torch.Tensor) -> torch.Tensor:
        ab = self.session.run(["ab"], {"gray_l": np.ascontiguousarray(gray_l.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(ab)


def read_metadata(path) -> dict:
    """The metadata_props of an exported model; refuses a file that is not one of ours or whose scales differ."""
    import onnx
    from gan_colorizer.color import AB_SCALE, L_SCALE
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 (protobuf raises its own DecodeError, onnx a few others)
        raise UserError(f"{path}: not an ONNX model ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})")
    meta = {p.key: p.value for p in model.metadata_props}
    if "size_multiple" not in meta:
        raise UserError(f"{path}: no gan_colorizer metadata (size_multiple); export it with {EXPORT}")
    for key, ours in (("l_scale", L_SCALE), ("ab_scale", AB_SCALE)):
        if key in meta and float(meta[key]) != ours:
            raise UserError(f"{path}: exported with {key} {meta[key]}, this version uses {ours:g}; export it again")
    return meta


def engine_for(path, engine: str | None) -> str:
    """The engine to use for a checkpoint or .onnx file: the one asked for, else the file's own."""
    if engine is not None and engine not in ENGINES:
        raise UserError(f"--engine {engine}: choose from {', '.join(ENGINES)}")
    if Path(path).suffix.lower() != ".onnx":
        if engine == "onnx-int8":
            raise UserError(f"--engine onnx-int8 needs a quantized model: {EXPORT} --int8 --calibration PHOTOS, "
                            f"then --checkpoint OUT.onnx ({path} is a PyTorch checkpoint)")
        return engine or "torch"
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    own = "onnx-int8" if "quantization" in read_metadata(path) else "onnx"
    if engine not in (None, own):
        raise UserError(f"--engine {engine}: {path} is an {own} model (leave --engine out, or pass "
                        f"{'the .pt checkpoint' if engine == 'torch' else 'a model exported with --int8'})")
    return own


def load_onnx(path, decode: str | None = None, annealed_t: float | None = None, threads=None) -> OnnxNetwork:
    """An exported model; its decoding is baked in, so --decode / --annealed-t other than its own are refused."""
    meta = read_metadata(path)
    if meta.get("head") == "classification" and (decode is not None or annealed_t is not None):
        raise UserError(f"{path}: the decoding is fixed at export ({meta.get('decoding')}); to change it, export "
                        f"again from the checkpoint or use --engine torch")
    return OnnxNetwork(path, meta, threads)


def onnx_from_generator(generator: torch.nn.Module, cfg, decoding: str | None = None, threads=None) -> OnnxNetwork:
    """The torch generator exported in memory (fp32) and run in onnxruntime: --engine onnx with a .pt checkpoint."""
    import tempfile
    import warnings

    from gan_colorizer.colorize.inference import size_multiple
    from gan_colorizer.colorize.onnx import export_onnx, model_metadata
    multiple = size_multiple(generator)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation note, printed once per process
        path = export_onnx(generator, Path(tmp) / "generator.onnx", multiple)
        data = path.read_bytes()
    meta = {k: str(v) for k, v in model_metadata(cfg, multiple, decoding).items()}
    return OnnxNetwork(data, meta, threads)
