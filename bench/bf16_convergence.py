"""Does bf16 autocast still converge? Stage 1 on the embedded photos, fp32 vs bf16, same seed and data.

    python bench/bf16_convergence.py [--steps 100] [--size 128]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import print_table, write_results  # noqa: E402
from gan_colorizer.console import setup_logging
from gan_colorizer.train.cli import main as train_main  # noqa: E402


def run(amp: str, steps: int, size: int, root: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    # --no-pretrained: a random body, as measured before this became the default, and nothing to download
    args = ["--amp", amp, "--no-pretrained", "--max-steps", str(steps), "--image-size", str(size), "--batch-size", "8",
            "--epoch-size", str(8 * 25), "--log-every", "5", "--image-every", "100000", "--name", amp,
            "--runs-dir", str(root / "runs"), "--checkpoints-dir", str(root / "checkpoints")]
    start = time.perf_counter()
    assert train_main("pretrain", args) == 0
    seconds = time.perf_counter() - start
    acc = EventAccumulator(str(root / "runs" / amp), size_guidance={"scalars": 0})
    acc.Reload()
    losses = [e.value for e in acc.Scalars("loss/g_l1")]
    return {"amp": amp, "steps": steps, "first_g_l1": losses[0], "last_g_l1_mean_of_4": statistics.mean(losses[-4:]),
            "val_l1": acc.Scalars("val/l1")[-1].value, "val_psnr": acc.Scalars("val/psnr")[-1].value,
            "seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    setup_logging()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(amp, args.steps, args.size, Path(tmp)) for amp in ("off", "bf16")]
    print_table(rows, list(rows[0]))
    print(f"written {write_results('bf16_convergence', rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
