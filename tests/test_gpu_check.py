"""bench/gpu_check.py, the one-command check for the day a GPU is lent: its dry run on CPU, and its stop at the first
failure."""
import importlib.util

import pytest
from conftest import ROOT


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_first_failing_check_stops_the_run_with_one_line(monkeypatch, capsys):
    module, ran = gpu_check(), []

    def fails(settings):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device\nmore lines")
    monkeypatch.setattr(module, "CHECKS", [("device", "the GPU", lambda s: [{"gpu": "x"}]), ("train steps", "steps", fails),
                                           ("evaluation", "eval", lambda s: ran.append(1) or [])])
    assert module.main(["--dry-run"]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gpu-check:")]
    assert lines == ["gpu-check: device ok: gpu x",
                     "gpu-check: train steps FAILED: RuntimeError: CUDA error: no kernel image is available for "
                     "execution on the device"]
    assert ran == []  # nothing after the failure


@pytest.mark.slow
def test_the_dry_run_says_what_it_would_measure_and_runs_every_check_tiny_on_cpu(capsys):
    module = gpu_check()
    results = sorted((ROOT / "bench" / "results").glob("gpu_check-*.json"))
    assert module.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for name, _, _ in module.CHECKS:
        assert f"\n  {name}: " in out and (f"gpu-check: {name} ok: " in out or name == "nccl")
    assert "stage-2 steps at 256 px, batch 16" in out and "fp16 + scaler" in out and "torch.compile" in out
    assert "gpu-check: nccl skipped: 0 CUDA device(s); needs 2" in out  # a skipped check is not called ok
    assert all(line.startswith(("gpu-check", "  ", "each check now")) for line in out.splitlines())  # one line a check
    assert sorted((ROOT / "bench" / "results").glob("gpu_check-*.json")) == results  # a dry run writes no figures


@pytest.mark.parametrize("flags", [["--batch", "0"], ["--size", "8"], ["--steps", "-1"]])
def test_sizes_a_gpu_run_cannot_use_are_refused(flags, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_check().main(flags)
    assert stop.value.code == 2 and f"{flags[0]} {flags[1]}: must be a positive" in capsys.readouterr().err
