"""Engines: what maps render-size gray_l to ab. torch runs the checkpoint's generator; onnx and onnx-int8 run an
exported model in onnxruntime, with no torch imported. The Colorizer's path around that call (which photos share a
forward, mood controls, alpha, EXIF, files) is shared; its maths is torch's or numpy's (inference_numpy.py)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gan_colorizer.cpu import has_vnni
from gan_colorizer.errors import UserError, reason

log = logging.getLogger(__name__)

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


MAX_MULTIPLE = 256  # the largest size multiple of our generators (the pix2pix U-Net's): the input's sides come from it
HINT_CHANNELS = 3  # hints.CHANNELS (hinted a, b and the mask); hints.py needs torch, which this module never imports
SEVEN_BITS = "7-bit int8 weights"  # in an int8 file's quantization metadata (int8.py): any CPU; other files need VNNI
MAX_TEXT = 200  # metadata shown to the user (the decoding) is one line of printable text at most this long


class BadModel(ValueError):
    """The model breaks the contract of our exports (metadata, input, output, or its output on a test input)."""


class OnnxRunError(RuntimeError):
    """onnxruntime failed on one input, or the model's ab is not finite or not its input's shape: one photo or video
    fails, the others go on (the callers catch RuntimeError)."""


class OnnxNetwork:
    """An ONNX generator in onnxruntime: gray_l (N, 1, H, W) -> ab (N, 2, H, W), numpy float32 in and out; an export
    of a hint model also reads hints (N, 3, H, W), hints.model_input's channels (takes_hints).

    Nothing in the file is trusted: its metadata, input and output are checked and it is run once on a small input
    before use (BadModel); each output is checked for its shape (before onnxruntime allocates it) and for NaN."""

    def __init__(self, model, metadata: dict | None = None, threads: int | None = None, note_bits: bool = True):
        """model: a file path or the serialized bytes; metadata: model_metadata's keys as strings (default: the
        model's own metadata_props); note_bits: a line when int8 weights of 8 bits meet a CPU known to lack VNNI."""
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
        options.log_severity_level = 4  # a failure reaches the user as our one line, not also as onnxruntime's log
        self.session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                                    providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map) if metadata is None else metadata
        self.multiple = size_multiple(self.metadata)
        self.decoding = metadata_text(self.metadata, "decoding")
        self.int8 = "quantization" in self.metadata
        quantization = self.metadata.get("quantization", "")  # files before 2026-12-07 say no bits: they had 8
        if note_bits and quantization and SEVEN_BITS not in quantization and has_vnni() is False:
            log.warning("%s has 8-bit int8 weights, made for a CPU with VNNI; this CPU has none, where they can "
                        "saturate and move colour: export it again here (--weight-bits 7)",
                        model if isinstance(model, (str, Path)) else "this model")
        self.takes_hints = check_signature(self.session)
        if self.takes_hints != ("hints" in self.metadata):
            raise BadModel(f"its inputs {'' if self.takes_hints else 'do not '}include hints, its metadata says "
                           f"{'nothing of' if self.takes_hints else 'it takes'} them; export it with {EXPORT}")
        self._try()

    def __call__(self, gray_l: np.ndarray, hints: np.ndarray | None = None) -> np.ndarray:
        """ab for gray_l (and a hint model's hint channels: zeros, the automatic mode, when None), written by
        onnxruntime into an array of gray_l's shape with 2 channels: a graph computing another shape fails before its
        output is allocated. OnnxRunError when it fails or its ab is not finite."""
        gray_l = np.ascontiguousarray(gray_l, dtype=np.float32)
        ab = np.empty((gray_l.shape[0], 2, *gray_l.shape[2:]), dtype=np.float32)
        binding = self.session.io_binding()
        binding.bind_cpu_input("gray_l", gray_l)
        if self.takes_hints:
            binding.bind_cpu_input("hints", self._hints(gray_l.shape, hints))
        elif hints is not None:
            raise ValueError("this model takes no hints (its export has no hints input)")
        binding.bind_output("ab", "cpu", 0, np.float32, ab.shape, ab.ctypes.data)
        try:
            self.session.run_with_iobinding(binding)
        except (RuntimeError, *onnxruntime_errors()) as e:  # onnxruntime's classes derive from Exception only
            raise OnnxRunError(run_failure(e, gray_l.shape)) from None
        if not np.isfinite(ab).all():
            raise OnnxRunError("its ab holds NaN or infinite values")
        return ab

    @staticmethod
    def _hints(shape, hints: np.ndarray | None) -> np.ndarray:
        """The hints input for gray_l of `shape`: the given maps (N, 3, H, W), or zeros."""
        expected = (shape[0], HINT_CHANNELS, *shape[2:])
        if hints is None:
            return np.zeros(expected, dtype=np.float32)
        if tuple(hints.shape) != expected:
            raise ValueError(f"hints {tuple(hints.shape)}: expected {expected} for gray_l {tuple(shape)}")
        return np.ascontiguousarray(hints, dtype=np.float32)

    def _try(self) -> None:
        """One forward on a small gray ramp: a model that fails or gives a bad ab on any input is refused at load."""
        side = max(self.multiple, 32)
        try:
            self(np.linspace(-1, 1, side * side, dtype=np.float32).reshape(1, 1, side, side))
        except OnnxRunError as e:
            raise BadModel(f"fails on a test input: {e}") from None


def onnxruntime_errors() -> tuple:
    """onnxruntime's exception classes (Fail, InvalidArgument, RuntimeException...): none derives from RuntimeError."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state
    return tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))


def run_failure(error: BaseException, shape) -> str:
    """onnxruntime's failure as the reason part of one line: its message without the source locations."""
    text = str(error)
    computed = re.search(r"computed output shape for this run is \{([\d,]+)\}", text)
    if computed:
        return f"its ab would be ({computed.group(1).replace(',', ', ')}) for gray_l {tuple(shape)}"
    text = re.sub(r"^(Error in execution: )?(\[ONNXRuntimeError\] : \d+ : \w+ : )?", "", text)
    text = re.sub(r"/onnxruntime_src/\S+ [^(]*\([^)]*\) ", "", text)  # file:line and the C++ signature
    return f"onnxruntime: {reason(ValueError(text), type(error).__name__)}"


def size_multiple(metadata: dict) -> int:
    """The model's size multiple, an integer in 1..MAX_MULTIPLE: the network's input sides are multiples of it (and
    at least it), so it bounds what is allocated before anything runs."""
    value = metadata.get("size_multiple")
    if value is None:
        raise BadModel(f"no gan_colorizer metadata (size_multiple); export it with {EXPORT}")
    if not (re.fullmatch(r"[0-9]{1,4}", str(value)) and 1 <= int(value) <= MAX_MULTIPLE):
        raise BadModel(f"metadata size_multiple {str(value)[:20]!r}: expected an integer in 1..{MAX_MULTIPLE}")
    return int(value)


def metadata_text(metadata: dict, key: str) -> str | None:
    """A metadata value shown to the user: one line of printable text, never escape codes or a page of it."""
    value = metadata.get(key) or None
    if value is not None and not (value.isprintable() and len(value) <= MAX_TEXT):
        raise BadModel(f"metadata {key}: not one line of printable text (at most {MAX_TEXT} characters)")
    return value


def check_signature(session) -> bool:
    """Float input gray_l (N, 1, H, W), with a hint model's float input hints (N, 3, H, W) after it, and one float
    output ab (N, 2, H, W), N, H and W free. Returns whether the model takes hints."""
    inputs = session.get_inputs()
    takes_hints = [a.name for a in inputs] == ["gray_l", "hints"]
    expected = {"gray_l": 1, "hints": HINT_CHANNELS} if takes_hints else {"gray_l": 1}
    for kind, args, channels in (("input", inputs, expected), ("output", session.get_outputs(), {"ab": 2})):
        if [a.name for a in args] != list(channels) or any(a.type != "tensor(float)" for a in args):
            listed = ", ".join(f"{a.name} ({a.type})" for a in args)[:MAX_TEXT]
            wanted = "one output, ab" if kind == "output" else "gray_l (and hints for a hint model)"
            raise BadModel(f"{kind}s {listed}: expected {wanted} (tensor(float))")
        for arg in args:
            _check_shape(kind, arg.name, arg.shape, channels[arg.name])
    return takes_hints


def _check_shape(kind: str, name: str, shape, channels: int) -> None:
    if shape is not None and len(shape) != 4:
        raise BadModel(f"{kind} {name} has {len(shape)} dimensions: expected 4 (N, {channels}, H, W)")
    if shape is not None and isinstance(shape[1], int) and shape[1] != channels:
        what = {"gray_l": "L", "ab": "a and b", "hints": "hinted a, b and the mask"}[name]
        raise BadModel(f"{kind} {name} has {shape[1]} channels: expected {channels} ({what})")
    if kind == "input" and shape is not None and any(isinstance(shape[i], int) for i in (0, 2, 3)):
        raise BadModel(f"input {name} has the fixed shape {shape}: its batch, height and width must be free "
                       f"(dynamic axes); export it with {EXPORT}")


def open_onnx(path, threads: int | None = None) -> OnnxNetwork:
    """An exported model of ours in onnxruntime (its metadata read from the same session: the file is loaded once);
    a missing file, a file that is not ONNX, one that breaks the contract of our exports or has other Lab scales is
    one line."""
    from gan_colorizer.color_numpy import AB_SCALE, L_SCALE
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    require(["onnxruntime"], f"{path}: the ONNX engine", f"{INSTALL_EXPORT}, or {INSTALL_TORCH_FREE} for the "
                                                         f"torch-free install")
    try:
        network = OnnxNetwork(path, threads=threads)
        meta = network.metadata
        for key, ours in (("l_scale", L_SCALE), ("ab_scale", AB_SCALE)):
            if key in meta and _number(meta, key) != ours:
                raise UserError(f"{path}: exported with {key} {meta[key]}, this version uses {ours:g}; export it "
                                f"again")
    except BadModel as e:
        raise UserError(f"{path}: {e}") from None
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 (onnxruntime raises InvalidProtobuf, Fail, InvalidGraph...)
        raise UserError(f"{path}: not an ONNX model ({reason(e)})") from None
    return network


def _number(metadata: dict, key: str) -> float:
    try:
        return float(metadata[key])
    except ValueError:
        raise BadModel(f"metadata {key} {metadata[key][:20]!r}: not a number") from None


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
