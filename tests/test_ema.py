"""The EMA copy of the generator: the average it keeps, in fused calls."""
import copy

import torch

from gan_colorizer.train.ema import EMA


def test_the_ema_update_is_one_fused_lerp_and_one_copy_with_the_per_tensor_result(monkeypatch):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 3))
    ema = EMA(net, 0.9)
    reference = copy.deepcopy(ema.model)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net[1].running_mean.add_(1.0)
    calls = []
    for owner, name in ((torch.Tensor, "lerp_"), (torch.Tensor, "copy_"), (torch, "_foreach_lerp_"),
                        (torch, "_foreach_copy_")):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, _o=original, _n=name, **k: (calls.append(_n), _o(*a, **k))[1])
    ema.update(net)
    monkeypatch.undo()
    assert sorted(calls) == ["_foreach_copy_", "_foreach_lerp_"]  # before: a lerp_ or copy_ per tensor (9)
    with torch.no_grad():
        for r, p in zip(reference.parameters(), net.parameters()):
            r.lerp_(p, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(ema.model.parameters(), reference.parameters()))
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean)  # statistics copied, not averaged
