"""runtime.py's choices for the hardware it finds: the autocast dtype of --amp auto, checked against mocked GPUs."""
import pytest
import torch

from gan_colorizer.runtime import resolve_amp


@pytest.mark.parametrize("capability, dtype", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                               ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16),
                                               ((9, 0), torch.bfloat16)])
def test_amp_auto_picks_bf16_only_where_the_gpu_runs_it_natively(monkeypatch, capability, dtype):
    """V100 (7.0) and T4 (7.5) emulate bf16, and torch.cuda.is_bf16_supported() says True there: fp16 + the
    scaler is their fast path. A100 (8.0) and newer run bf16 in hardware."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # as it answers on V100 / T4
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert resolve_amp("auto", torch.device("cuda")) == dtype
    assert resolve_amp("bf16", torch.device("cuda")) == torch.bfloat16  # asked for by name: as asked
    assert resolve_amp("off", torch.device("cuda")) is None


def host_reads(monkeypatch, optimizers) -> list:
    """Every read of a tensor's value by the host (a device sync on a GPU), by method name; not those of the
    optimizers' own steps (Adam reads its step counters, which live on the CPU)."""
    reads, inside = [], []
    for name in ("__float__", "__bool__", "__int__", "item", "tolist"):
        def read(self, *args, _original=getattr(torch.Tensor, name), _name=name):
            if not inside:
                reads.append(_name)
            return _original(self, *args)
        monkeypatch.setattr(torch.Tensor, name, read)
    for optimizer in optimizers:
        def step(*args, _original=optimizer.step, **kwargs):
            inside.append(1)
            try:
                return _original(*args, **kwargs)
            finally:
                inside.pop()
        monkeypatch.setattr(optimizer, "step", step)
    return reads


def test_a_gan_step_reads_its_loss_parts_back_once_not_per_part_and_micro_batch(monkeypatch):
    """Two micro-batches of stage 2: before, every part of every micro-batch was a float() (8 reads) besides the
    two update decisions; now the decisions (one per net, gradients and losses together) and one read of all parts."""
    from test_gan_knobs import batch, gan_cfg, tiny_nets

    from gan_colorizer.runtime import Runtime
    from gan_colorizer.train.steps import gan_step, make_optimizer
    cfg = gan_cfg(grad_accum=2)
    nets, rt = tiny_nets(), Runtime("cpu", "off", channels_last=False)
    opts = {"g": make_optimizer(nets.generator, cfg), "d": make_optimizer(nets.discriminator, cfg, "d")}
    reads = host_reads(monkeypatch, opts.values())
    parts, _ = gan_step(rt, nets, opts, [batch(0), batch(1)], cfg)
    monkeypatch.undo()
    assert set(parts) == {"d_real", "d_fake", "g_gan", "g_l1"}
    assert len(reads) == 3, reads


@pytest.fixture
def backend_flags(monkeypatch):
    """torch's global cuDNN / TF32 switches at their defaults, restored after the test."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # torch's default: TF32 convolutions on Ampere
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # TF32 matmuls allowed, as a user's script may have set
    yield
    torch.set_float32_matmul_precision(precision)


def test_cudnn_benchmark_is_on_for_training_and_off_for_everything_else(backend_flags):
    from gan_colorizer.runtime import Runtime
    Runtime("cpu", "bf16", training=True)
    assert torch.backends.cudnn.benchmark  # fixed crops: the per-shape algorithm search pays off
    Runtime("cpu", "bf16")
    assert not torch.backends.cudnn.benchmark  # full-resolution photos: a new shape at nearly every call


def test_fp32_means_no_tf32_and_validation_runs_without_it(backend_flags, monkeypatch):
    from gan_colorizer.runtime import Runtime
    from gan_colorizer.train import loop
    Runtime("cpu", "off")
    assert not torch.backends.cudnn.allow_tf32 and torch.get_float32_matmul_precision() == "highest"
    Runtime("cpu", "bf16")
    assert torch.backends.cudnn.allow_tf32  # under autocast the few fp32 convolutions may use TF32
    torch.set_float32_matmul_precision("high")
    seen = []

    def spy(*args):
        seen.append((torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()))
        return {"n": 0.0}

    class Run:  # what loop.validate reads of a run
        val_loader, rt, dist, sources = [()], Runtime("cpu", "bf16"), None, {"val": "photos"}
        shown_generator = staticmethod(lambda: None)

    class Guard:
        batches, agree = staticmethod(lambda *a: iter(())), staticmethod(lambda **k: True)
    monkeypatch.setattr(loop, "validation_sums", spy)
    monkeypatch.setattr(loop.distributed, "sum_over_ranks", lambda d, sums, device: sums)
    loop.validate(Run, Guard)
    assert seen == [(False, "highest")]  # off inside validation, back on after
    assert torch.backends.cudnn.allow_tf32 and torch.get_float32_matmul_precision() == "high"


def test_loader_workers_feeding_a_gpu_are_this_processs_share_of_its_cpus(monkeypatch):
    """A cluster job sees the machine's 64 cores in os.cpu_count() but may run on 32; torchrun starts 8 processes
    per node: 4 workers each, not min(8, 64) = 8 each (64 decoding processes on 32 CPUs)."""
    from gan_colorizer.runtime import resolve_workers
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert resolve_workers(-1, torch.device("cuda")) == 4
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert resolve_workers(-1, torch.device("cuda")) == 8  # one process: at most 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_workers(-1, torch.device("cuda")) == 1  # never none
    assert resolve_workers(-1, torch.device("cpu")) == 1 and resolve_workers(3, torch.device("cuda")) == 3
