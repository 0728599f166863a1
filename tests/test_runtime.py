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
