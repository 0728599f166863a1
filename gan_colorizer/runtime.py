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
    compute threads (measured: 2 workers cost 39% of throughput on 2 cores); min(8, cores) feeding a GPU."""
    if num_workers >= 0:
        return num_workers
    return 1 if device.type == "cpu" else min(8, os.cpu_count() or 1)


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


def grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    """One fused norm per gradient and a single device sync."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Runtime:
    """Device, autocast dtype, gradient scaler (fp16 only) and memory format, shared by training and evaluation."""

    def __init__(self, device: str = "auto", amp: str = "auto", channels_last: bool = True):
        self.device = resolve_device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.channels_last = channels_last
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

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

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def finite_gradients(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale the gradients (fp16; a no-op otherwise) and tell whether every one is finite. Once per optimizer
        and step, before step(): fp16 overflow steps, which the scaler would skip anyway, are reported too."""
        self.scaler.unscale_(optimizer)
        return grads_finite(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, finite: bool) -> bool:
        """Update when `finite` (losses and gradients, on every process); False when the update was skipped."""
        if finite:
            self.scaler.step(optimizer)
        return finite

    def end_step(self) -> None:
        self.scaler.update()


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel (.module) and torch.compile (._orig_mod) wrappers."""
    while True:
        inner = getattr(net, "_orig_mod", None) or (net.module if type(net).__name__ == "DistributedDataParallel" else None)
        if inner is None:
            return net
        net = inner


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
