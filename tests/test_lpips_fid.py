"""LPIPS and FID networks: the published files through torch.hub's cache (downloaded on first use), a flag's file,
and equal to the reference packages given the same weights.

Random weights stand in for the real ones; conftest.py blocks every download, and the download tests replace it
with one that writes those random weights.
"""
import functools
from unittest import mock

import pytest
import torch
import torchvision

from gan_colorizer.errors import UserError
from gan_colorizer.evaluate import lpips_fid as P
from gan_colorizer.weights import hub_checkpoint


@pytest.fixture(autouse=True)
def no_cache(empty_torch_home):
    """An empty torch hub cache: these tests fill it themselves."""
    return empty_torch_home


@functools.lru_cache(maxsize=1)
def random_fid_state(seed=0) -> dict:
    """Built once: the Inception takes seconds to construct."""
    torch.manual_seed(seed)
    net = P.FidInception()
    for m in net.modules():  # spread-out weights so that a wrong layer shows in the features
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, 0, 0.05)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return net.net.state_dict()


@functools.lru_cache(maxsize=1)
def alexnet_state(seed=0) -> dict:
    torch.manual_seed(seed)
    return torchvision.models.alexnet(weights=None).state_dict()


@pytest.mark.slow
def test_fid_inception_equals_pytorch_fid_with_the_same_weights(tmp_path):
    import pytorch_fid.inception as reference
    state = random_fid_state()
    torch.save(state, tmp_path / "fid.pth")
    ours, source = P.load_fid(tmp_path / "fid.pth")
    assert source == str(tmp_path / "fid.pth") and not ours.training
    with mock.patch.object(reference, "load_state_dict_from_url", lambda *a, **k: state):
        theirs = reference.InceptionV3([3]).eval()  # block 3 = pool3, 2048-d
    rgb = torch.rand(2, 3, 96, 80)
    with torch.no_grad():
        a, b = ours(rgb), theirs(rgb)[0].flatten(1)
    assert a.shape == (2, 2048) and a.std() > 0
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")  # lpips still passes torchvision's old pretrained= argument
@pytest.mark.slow
def test_lpips_equals_the_lpips_package_with_the_same_alexnet(tmp_path):
    """The reference is built apart from our loader: lpips' bundled linear layers over a random trunk whose layers
    are replaced by the AlexNet's; ours takes [0, 1] images and returns (B,), lpips takes [-1, 1]."""
    import lpips
    state = alexnet_state()
    torch.save(state, tmp_path / "alexnet.pth")
    ours, _ = P.load_lpips(tmp_path / "alexnet.pth")
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(state)
    theirs = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    for block in (theirs.net.slice1, theirs.net.slice2, theirs.net.slice3, theirs.net.slice4, theirs.net.slice5):
        for name in list(block._modules):
            block._modules[name] = alexnet.features[int(name)]
    x, y = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x * 2 - 1, y * 2 - 1).flatten()
        assert expected.shape == (3,) and expected.min() > 0
        assert torch.allclose(ours(x, y), expected, atol=1e-6)
        assert ours(x, x).abs().max() < 1e-6
        whole, _ = P.load_lpips(_saved(theirs.state_dict(), tmp_path / "lpips_whole.pth"))
        assert torch.allclose(whole(x, y), expected, atol=1e-6)


def _saved(state, path):
    torch.save(state, path)
    return path


def test_weights_are_found_in_the_torch_hub_cache():
    for name, state in ((P.FID_FILE, random_fid_state()), (P.ALEXNET_FILE, alexnet_state())):
        path = hub_checkpoint(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    (fid, fid_source), (lp, lp_source) = P.load_fid(), P.load_lpips()
    assert fid is not None and lp is not None
    assert fid_source == f"{hub_checkpoint(P.FID_FILE)} (cached)" and P.ALEXNET_FILE in lp_source


def test_the_cache_names_are_those_the_packages_download():
    from pytorch_fid.inception import FID_WEIGHTS_URL
    assert FID_WEIGHTS_URL.endswith("/" + P.FID_FILE)
    assert torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url.endswith("/" + P.ALEXNET_FILE)


@pytest.mark.slow  # builds the FID Inception: 4 s
def test_first_use_downloads_both_files_into_the_torch_hub_cache(fake_download):
    from pytorch_fid.inception import FID_WEIGHTS_URL
    files, urls = fake_download
    files[P.FID_FILE], files[P.ALEXNET_FILE] = random_fid_state(), alexnet_state()
    (fid, fid_source), (lp, lp_source) = P.load_fid(), P.load_lpips()
    assert fid is not None and lp is not None
    assert urls == [FID_WEIGHTS_URL, torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url]
    for name in (P.FID_FILE, P.ALEXNET_FILE):
        assert hub_checkpoint(name).is_file()
    assert fid_source == f"{hub_checkpoint(P.FID_FILE)} (downloaded from {FID_WEIGHTS_URL})"
    name = "Conv2d_1a_3x3.conv.weight"
    assert torch.equal(fid.net.state_dict()[name], random_fid_state()[name])
    (_, fid_source), (_, lp_source) = P.load_fid(), P.load_lpips()  # once: from the cache from now on
    assert len(urls) == 2 and fid_source.endswith("(cached)") and lp_source.endswith("(cached)")


def test_offline_with_nothing_cached_gives_none_and_a_one_line_reason():
    from conftest import DOWNLOADS
    before = len(DOWNLOADS)
    cases = ((P.load_fid, P.FID_FILE, "--fid-weights"), (P.load_lpips, P.ALEXNET_FILE, "--lpips-weights"))
    for load, name, flag in cases:
        net, reason = load()
        assert net is None and name in reason and flag in reason and str(hub_checkpoint(name).parent) in reason
        assert "downloading" in reason and "\n" not in reason
    assert len(DOWNLOADS) == before + 2  # each tried once, and was refused


def test_no_download_uses_only_the_cache():
    from conftest import DOWNLOADS
    before = len(DOWNLOADS)
    net, reason = P.load_fid(download=False)
    assert net is None and "(--no-download)" in reason and P.FID_FILE in reason and len(DOWNLOADS) == before


def test_an_unusable_cached_file_gives_none_and_a_reason():
    path = hub_checkpoint(P.FID_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(alexnet_state(), path)
    net, reason = P.load_fid()
    assert net is None and str(path) in reason and "not pytorch-fid's FID Inception" in reason
    path.write_bytes(b"truncated")
    net, reason = P.load_fid()
    assert net is None and "not a readable FID Inception weights" in reason and "delete it" in reason


def test_a_flag_naming_a_missing_or_wrong_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        P.load_fid(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="junk.pth"):
        P.load_lpips(tmp_path / "junk.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "not_alexnet.pth")
    with pytest.raises(UserError, match="not AlexNet / LPIPS weights"):
        P.load_lpips(tmp_path / "not_alexnet.pth")
    torch.save(alexnet_state(), tmp_path / "alexnet.pth")
    with pytest.raises(UserError, match="not pytorch-fid's FID Inception"):
        P.load_fid(tmp_path / "alexnet.pth")
