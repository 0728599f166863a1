"""Where the tensors live: device choice, mixed precision, memory format, and the device-side batch path."""
from __future__ import annotations

import contextlib
import os
import random
import shutil

import numpy as np
import torch

from gan_colorizer.color import rgb_to_model
from gan_colorizer.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return torch.device(name)


def resolve_workers(num_workers: int, device: torch.device) -> int:
    """-1 (auto): one worker on CPU, where decoding is cheap next to the step and extra workers preempt the
    compute threads (measured: 2 workers cost 39% of throughput on 2 cores). Feeding a GPU: this process's share of
    the CPUs it may run on (its affinity, which a cluster's job limits, not the machine's count) among the node's
    processes (torchrun's LOCAL_WORLD_SIZE), at most 8."""
    if num_workers >= 0:
        return num_workers
    if device.type == "cpu":
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


def compile_net(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """torch.compile, after checking what it needs; it compiles lazily, on the first step."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise UserError("--compile: torch.compile on CPU needs a C++ compiler (g++ or clang++); install one, "
                        "or run without --compile")
    return torch.compile(net)


def compile_errors_as_user_errors(step_fn):
    """A step function whose torch.compile failures (first step) become one-line UserErrors."""
    def guarded(*args, **kwargs):
        try:
            return step_fn(*args, **kwargs)
        except Exception as e:
            if not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise UserError(f"--compile: torch.compile failed on this platform ({first}); run without --compile") from None
    return guarded


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 (or AMX) CPUs run bf16 matmuls and convolutions natively."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Compute capability 8.0 (Ampere) and newer run bf16 in hardware. torch.cuda.is_bf16_supported() says True on
    V100 / T4 too, where bf16 is emulated and its convolutions are slow fallbacks."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for --amp, or None for fp32. auto: bf16 where the hardware runs it natively, fp16 (with the
    gradient scaler in training) on older GPUs, fp32 on CPUs without bf16 instructions. Training, evaluation,
    colorizing and the benchmarks all choose here."""
    if mode == "off":
        return None
    if mode == "fp16":
        if device.type != "cuda":
            raise UserError("--amp fp16 needs a CUDA device; on CPU use --amp bf16 or off")
        return torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def finite_flags(optimizer: torch.optim.Optimizer, losses: tuple = ()) -> tuple[bool, bool]:
    """(every gradient finite, every tensor of `losses` finite): one fused norm per gradient and a single device
    sync for both."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads and not losses:
        return True, True
    device = (grads or losses)[0].device
    flags = [torch.stack(torch._foreach_norm(grads)).isfinite().all() if grads else torch.ones((), dtype=torch.bool,
                                                                                                device=device)]
    flags.append(torch.stack([v.to(device) for v in losses]).isfinite().all() if losses else torch.ones_like(flags[0]))
    return tuple(torch.stack(flags).tolist())


@contextlib.contextmanager
def exact_fp32():
    """fp32 without TF32 inside (validation's figures, as evaluate.py's fp32 ones), the previous settings after."""
    before = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before[0]
        torch.set_float32_matmul_precision(before[1])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# Each net's first fp16 loss scale. G's largest gradient at start-up is about 180 (stage 2's lambda * L1, fresh
# resunet, 128 and 256 px alike; bench/fp16_scale.py): fp16 (max 65504) holds it up to 2^8, so
# torch's default 2^16 cost 8 skipped G updates while D trained alone. Gradients that 2^8 flushes to zero (below
# 2^-24 / 2^8, about 2e-10) move Adam by less than 1% of a step (its eps is 1e-8). D's stay below 0.13: 2^16.
FP16_INIT_SCALES = {"g": 2.0 ** 8, "d": 2.0 ** 16}


class Scalers:
    """fp16's gradient scalers, one per optimizer ("g", "d"; a no-op without fp16). Each net's scale follows its own
    gradients: G's (lambda * L1) reach about 1,500x D's (bench/fp16_scale.py), so one shared scale would be set by
    G's, leaving D's small gradients nearer to underflow, and an overflow in G's backward would lower D's scale too
    (pix2pixHD keeps one loss scale per loss the same way: apex amp with num_losses=2). Each scaler is updated right
    after its own optimizer's step, skipped or not, so --d-steps K updates D's K times a step."""

    def __init__(self, device_type: str, enabled: bool, init_scale: float | None = None):
        self.device_type, self.enabled, self.init_scale = device_type, enabled, init_scale
        self.by_net: dict[str, torch.amp.GradScaler] = {}

    def __getitem__(self, net: str) -> torch.amp.GradScaler:
        if net not in self.by_net:
            first = self.init_scale or FP16_INIT_SCALES.get(net, 2.0 ** 16)
            self.by_net[net] = torch.amp.GradScaler(self.device_type, init_scale=first, enabled=self.enabled)
        return self.by_net[net]

    def state_dict(self) -> dict:
        """Each net's scale and growth tracker; empty without fp16 (a checkpoint's resume starts a fresh scale)."""
        return {net: scaler.state_dict() for net, scaler in self.by_net.items()} if self.enabled else {}

    def load_state_dict(self, state: dict) -> None:
        if "scale" in state:  # a checkpoint from before one scaler per net: its one scale for each
            state = {"g": state, "d": state}
        for net, one in state.items():
            self[net].load_state_dict(one)


class Runtime:
    """Device, autocast dtype, gradient scalers (fp16 only) and memory format, shared by training and evaluation."""

    def __init__(self, device: str = "auto", amp: str = "auto", channels_last: bool = True, training: bool = False):
        self.device = resolve_device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.channels_last = channels_last
        self.scaler = Scalers(self.device.type, enabled=self.amp_dtype == torch.float16)
        # cuDNN's per-shape algorithm search pays off on training's fixed crops; full-resolution photos change shape
        # at nearly every call, and each new shape would be searched again
        torch.backends.cudnn.benchmark = training
        # fp32 (--amp off) means fp32: no TF32 convolutions (cuDNN's default on Ampere and newer) or matmuls
        torch.backends.cudnn.allow_tf32 = self.amp_dtype is not None
        if self.amp_dtype is None:
            torch.set_float32_matmul_precision("highest")

    @property
    def amp_name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def place(self, net: torch.nn.Module) -> torch.nn.Module:
        net = net.to(self.device)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batch(self, pixels: torch.Tensor, flips: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, 3, H, W) RGB from the loader -> (gray_l, real_ab) on the device; flips applied here."""
        x = pixels.to(self.device, non_blocking=True)
        if flips is not None and bool(flips.any()):
            mask = flips.to(self.device, non_blocking=True).view(-1, 1, 1, 1)
            x = torch.where(mask, x.flip(-1), x)
        gray_l, real_ab = rgb_to_model(x)
        return self.layout(gray_l), self.layout(real_ab)

    def backward(self, loss: torch.Tensor, net: str = "g") -> None:
        """loss.backward(), through net's scaler under fp16."""
        self.scaler[net].scale(loss).backward()

    def finite_gradients(self, optimizer: torch.optim.Optimizer, net: str = "g") -> bool:
        """Unscale the gradients (fp16; a no-op otherwise) and tell whether every one is finite. Once per optimizer
        update, before step()."""
        return self.finite(optimizer, net)[0]

    def finite(self, optimizer: torch.optim.Optimizer, net: str = "g", losses: tuple = ()) -> tuple[bool, bool]:
        """finite_gradients, and whether every tensor of `losses` is finite, in the same device sync."""
        self.scaler[net].unscale_(optimizer)
        return finite_flags(optimizer, losses)

    def step(self, optimizer: torch.optim.Optimizer, finite: bool, net: str = "g") -> bool:
        """Update when `finite` (losses and gradients, on every process); False when the update was skipped. Then
        net's scaler updates its scale (lowered after an overflow, which unscaling recorded)."""
        if finite:
            self.scaler[net].step(optimizer)
        self.scaler[net].update()
        return finite


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel (.module) and torch.compile (._orig_mod) wrappers."""
    while True:
        inner = getattr(net, "_orig_mod", None) or (net.module if type(net).__name__ == "DistributedDataParallel" else None)
        if inner is None:
            return net
        net = inner


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
