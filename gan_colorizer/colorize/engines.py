"""Engines: what maps render-size gray_l to ab. torch runs the checkpoint's generator; onnx and onnx-int8 run an
exported model in onnxruntime, with no torch imported. The Colorizer's path around that call (which photos share a
forward, mood controls, alpha, EXIF, files) is shared; its maths is torch's or numpy's (inference_numpy.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gan_colorizer.errors import UserError, reason

ENGINES = ("torch", "onnx", "onnx-int8")
EXPORT = "python -m gan_colorizer.colorize.onnx --checkpoint CKPT --onnx OUT.onnx"
INSTALL_EXPORT = 'pip install -e ".[export]"'
INSTALL_TORCH_FREE = "pip install -r requirements-colorize.txt"


def require(modules, what: str, install: str) -> None:
    """Refuse in one line (UserError) when one of the modules cannot be imported: what needs it, how to install it."""
    import importlib
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UserError(f"{what} needs {name}, which is not installed: {install}") from None


class OnnxNetwork:
    """An ONNX generator in onnxruntime: gray_l (N, 1, H, W) -> ab (N, 2, H, W), numpy float32 in and out."""

    def __init__(self, model, metadata: dict | None = None, threads: int | None = None):
        """model: a file path or the serialized bytes; metadata: model_metadata's keys as strings (default: the
        model's own metadata_props)."""
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # idle threads sleep instead of spinning, as colorize.py's OMP_WAIT_POLICY=PASSIVE: on the 2-core machine at
        # load 8-9 the path ran 8-15% faster (fp32 and int8, side by side), its decode / encode threads get the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # no memory arena: activations go back to the system after each forward; a 24 MP photo peaked 136 MB (int8)
        # and 69 MB (fp32) lower, at the same speed (2-core machine, load 10, side by side)
        options.enable_cpu_mem_arena = False
        self.session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                                    providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map) if metadata is None else metadata
        self.multiple = int(self.metadata.get("size_multiple", 32))
        self.decoding = self.metadata.get("decoding") or None
        self.int8 = "quantization" in self.metadata

    def __call__(self, gray_l: np.ndarray) -> np.ndarray:
        return self.session.run(["ab"], {"gray_l": np.ascontiguousarray(gray_l, dtype=np.float32)})[0]


def open_onnx(path, threads: int | None = None) -> OnnxNetwork:
    """An exported model of ours in onnxruntime (its metadata read from the same session: the file is loaded once);
    a missing file, a file that is not ONNX, one without our metadata or with other Lab scales is one line."""
    from gan_colorizer.color_numpy import AB_SCALE, L_SCALE
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    require(["onnxruntime"], f"{path}: the ONNX engine", f"{INSTALL_EXPORT}, or {INSTALL_TORCH_FREE} for the "
                                                         f"torch-free install")
    try:
        network = OnnxNetwork(path, threads=threads)
    except Exception as e:  # noqa: BLE001 (onnxruntime raises InvalidProtobuf, Fail, InvalidGraph...)
        raise UserError(f"{path}: not an ONNX model ({reason(e)})")
    meta = network.metadata
    if "size_multiple" not in meta:
        raise UserError(f"{path}: no gan_colorizer metadata (size_multiple); export it with {EXPORT}")
    for key, ours in (("l_scale", L_SCALE), ("ab_scale", AB_SCALE)):
        if key in meta and float(meta[key]) != ours:
            raise UserError(f"{path}: exported with {key} {meta[key]}, this version uses {ours:g}; export it again")
    return network


def engine_for(path, engine: str | None, network: OnnxNetwork | None = None) -> str:
    """The engine to use for a checkpoint or .onnx file (network: the file already loaded): the one asked for,
    else the file's own."""
    if engine is not None and engine not in ENGINES:
        raise UserError(f"--engine {engine}: choose from {', '.join(ENGINES)}")
    if Path(path).suffix.lower() != ".onnx":
        if engine == "onnx-int8":
            raise UserError(f"--engine onnx-int8 needs a quantized model: {EXPORT} --int8 --calibration PHOTOS, "
                            f"then --checkpoint OUT.onnx ({path} is a PyTorch checkpoint)")
        return engine or "torch"
    own = "onnx-int8" if (network or open_onnx(path)).int8 else "onnx"
    if engine not in (None, own):
        raise UserError(f"--engine {engine}: {path} is an {own} model (leave --engine out, or pass "
                        f"{'the .pt checkpoint' if engine == 'torch' else 'a model exported with --int8'})")
    return own


def load_onnx(path, decode: str | None = None, annealed_t: float | None = None, threads=None,
              engine: str | None = None) -> OnnxNetwork:
    """An exported model, for `engine` (None: its own); its decoding is baked in, so --decode / --annealed-t other
    than its own are refused."""
    network = open_onnx(path, threads)
    engine_for(path, engine, network)
    meta = network.metadata
    if meta.get("head") == "classification" and (decode is not None or annealed_t is not None):
        raise UserError(f"{path}: the decoding is fixed at export ({meta.get('decoding')}); to change it, export "
                        f"again from the checkpoint or use --engine torch")
    return network
