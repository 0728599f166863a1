"""Multi-process training under torchrun: process group, DDP wrapping, sync BatchNorm, collectives.

A single process (no torchrun) gets world size 1 and every function here is a no-op.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gan_colorizer.data import scan
from gan_colorizer.errors import UserError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Dist()  # one process, no torchrun: every collective below is a no-op
SCAN_ROUND = 512  # files each rank checks per round of a shared scan (about a second; the longest wait it causes)


def setup(device: str) -> tuple[Dist, str]:
    """Join the process group torchrun describes in the environment; returns (Dist, device for this rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return Dist(rank, world, local_rank), device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(d: Dist, obj=None):
    """rank 0's obj on every rank."""
    if not d.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(d: Dist, fn):
    """fn() on rank 0, its result on every rank. A UserError there is raised on every rank (all exit cleanly); any
    other failure is raised on rank 0 as it was and, as a one-line UserError naming it, on the others, which would
    otherwise wait in the broadcast until the process group's timeout."""
    if not d.active:
        return fn()
    result, error, failure = None, None, None
    if d.main:
        try:
            result = fn()
        except UserError as e:
            error = e
        except BaseException as e:  # a bug or an interrupt: its traceback stays on rank 0
            failure, error = e, UserError(f"process 0 failed ({type(e).__name__}: {str(e)[:200]}); its output says "
                                          "more")
    result, error = broadcast_object(d, (result, error))
    if failure is not None:
        raise failure
    if error is not None:
        raise error
    return result


def on_main_sharing_scan(d: Dist, fn):
    """on_main(d, fn) where fn scans folders: the files its scan must check (those not in the scan cache) are shared
    over all ranks in rounds, each rank checking every world-th file of a round, and rank 0 gathers the outcomes in
    order (the same lists as a single-process scan). Rank 0 alone lists the folder and reads and writes the cache.
    No rank waits at a collective for longer than one round (SCAN_ROUND files per rank), or rank 0's listing and
    cache reading before the first round and its split and cache writing after the last."""
    if not d.active:
        return fn()
    if not d.main:
        while (work := broadcast_object(d)) is not None:
            names, workers = work
            dist.gather_object(scan.check_here(names[d.rank::d.world], workers), dst=0)
        return on_main(d, fn)  # rank 0's result, or its UserError

    def shared(names: list[str], workers: int, bar) -> list:
        outcomes = []
        for start in range(0, len(names), SCAN_ROUND * d.world):
            chunk = names[start:start + SCAN_ROUND * d.world]
            broadcast_object(d, (chunk, workers))
            parts, ordered = [None] * d.world, [None] * len(chunk)
            dist.gather_object(scan.check_here(chunk[::d.world], workers), parts, dst=0)
            for rank, part in enumerate(parts):
                ordered[rank::d.world] = part
            outcomes += ordered
            bar.update(len(chunk))
        return outcomes

    def scan_shared():
        try:
            with scan.shared_checking(shared):
                return fn()
        finally:
            broadcast_object(d, None)  # the other ranks stop helping and wait for the result
    return on_main(d, scan_shared)


def all_reduce_sum(d: Dist, values: list[float], device) -> list[float]:
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(d: Dist, flag: bool, device) -> bool:
    """True on every rank when flag is True on any rank (stop requests, divergence)."""
    return bool(all_reduce_sum(d, [float(flag)], device)[0] > 0) if d.active else flag


def every_rank(d: Dist, flag: bool, device) -> bool:
    """True on every rank when flag is True on every rank (a step every process may take)."""
    return not any_rank(d, not flag, device)


def sum_over_ranks(d: Dist, values: dict, device) -> dict:
    """Each value summed over the processes, as a dict (keys in the same order on every rank)."""
    keys = sorted(values)
    return dict(zip(keys, all_reduce_sum(d, [values[k] for k in keys], device)))


def mean_over_ranks(d: Dist, values: dict, device) -> dict:
    """The mean of each value over the processes (each saw an equal share of the batch)."""
    return {k: v / d.world for k, v in sum_over_ranks(d, values, device).items()}


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm with statistics over all ranks, for gloo on CPU (torch's SyncBatchNorm runs on GPUs only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce  # differentiable all_reduce
        x32 = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32)
        stats = torch.cat([x32.sum(dim=(0, 2, 3)), (x32 * x32).sum(dim=(0, 2, 3)), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / max(n.item() - 1, 1.0), alpha=m)
        shape = (1, c, 1, 1)
        out = (x32 - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return (out * self.weight.view(shape) + self.bias.view(shape)).to(x.dtype)


def convert_sync_bn(net: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> torch's SyncBatchNorm on GPUs, CPUSyncBatchNorm on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d) and type(child) is not CPUSyncBatchNorm:
            sync = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            sync.load_state_dict(child.state_dict())
            setattr(net, name, sync.to(child.weight.device))
        else:
            convert_sync_bn(child, device)
    return net


def wrap(net: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    if not d.active:
        return net
    ids = [device.index] if device.type == "cuda" else None
    # DDP's default syncs buffers (BatchNorm running statistics) from rank 0 at every forward; naming it with
    # broadcast_buffers= is deprecated since torch 2.14 (forward_sync_buffers, which older torch lacks)
    return DistributedDataParallel(net, device_ids=ids)


def _ddp(net: nn.Module) -> DistributedDataParallel | None:
    """The DDP wrapper of net, also when torch.compile wraps DDP."""
    while not isinstance(net, DistributedDataParallel):
        net = getattr(net, "_orig_mod", None)
        if net is None:
            return None
    return net


def sync_gradients(net: nn.Module, sync: bool):
    """DDP's no_sync() when sync is False (all but the last micro-batch of an accumulated step, or a frozen net):
    no needless all-reduce, and no reducer waiting for gradients that never come."""
    ddp = _ddp(net)
    if sync or ddp is None:
        return contextlib.nullcontext()
    return ddp.no_sync()
