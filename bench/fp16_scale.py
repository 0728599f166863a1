"""fp16's first loss scale per net: the largest |gradient| of a fresh stage-2 step, parameters and every module's
output, in fp32 (the same gradients fp16 computes, without its overflow), and the largest power-of-two scale that
keeps them under fp16's maximum (65504). runtime.FP16_INIT_SCALES is chosen from it.

    python bench/fp16_scale.py [--sizes 128x8 256x8]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import photo_folder, print_table, write_results  # noqa: E402
from gan_colorizer.config import defaults  # noqa: E402
from gan_colorizer.data.dataset import EpochSampler, PhotoDataset, make_loader  # noqa: E402
from gan_colorizer.data.images import list_images  # noqa: E402
from gan_colorizer.losses import discriminator_loss, generator_loss, reconstruction  # noqa: E402
from gan_colorizer.models.patchgan import build_discriminator  # noqa: E402
from gan_colorizer.models.registry import build_generator  # noqa: E402
from gan_colorizer.runtime import Runtime  # noqa: E402

FP16_MAX = 65504.0


def largest_gradients(size: int, batch: int) -> dict:
    """{net: (largest |gradient| of a module output, of a parameter)} of one fresh stage-2 step (pix2pix order)."""
    torch.manual_seed(0)
    rt, cfg = Runtime("cpu", "off", channels_last=False), defaults("gan")
    G = build_generator(cfg.model, load_pretrained=False).train()
    D = build_discriminator(cfg.model).train()
    paths = list_images(photo_folder())
    loader = make_loader(PhotoDataset(paths, size, True), EpochSampler(len(paths), 0, True), batch, 0, False, True)
    gray_l, real_ab = rt.batch(*next(iter(loader)))
    seen = {"output": 0.0}

    def watch(module, inputs, out):
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda g: seen.update(output=max(seen["output"], g.abs().max().item())))
    for net in (G, D):
        for module in net.modules():
            module.register_forward_hook(watch)
    fake = G(gray_l)
    discriminator_loss(D(gray_l, real_ab), D(gray_l, fake.detach()))[0].backward()
    result = {"d": (seen["output"], max(p.grad.abs().max().item() for p in D.parameters() if p.grad is not None))}
    seen["output"] = 0.0
    D.requires_grad_(False)
    generator_loss(D(gray_l, fake), reconstruction(fake, real_ab, cfg.optim), cfg.optim.lambda_l1)[0].backward()
    result["g"] = (seen["output"], max(p.grad.abs().max().item() for p in G.parameters() if p.grad is not None))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["128x8", "256x8"], help="SIZExBATCH pairs")
    args = parser.parse_args(argv)
    rows = []
    for spec in args.sizes:
        size, batch = map(int, spec.split("x"))
        for net, (output, parameter) in largest_gradients(size, batch).items():
            exponent = math.floor(math.log2(FP16_MAX / max(output, parameter)))
            rows.append({"net": net, "size": size, "batch": batch, "max_output_grad": output,
                         "max_parameter_grad": parameter, "largest_scale_log2": exponent,
                         "halvings_from_2^16": max(0, 16 - exponent)})
    print_table(rows, list(rows[0]))
    print(write_results("fp16_scale", rows, {"generator": "resunet-resnet18 (fresh, random body)", "stage": "gan"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
