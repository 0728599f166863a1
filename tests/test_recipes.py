"""Every recipe in configs/ says what it is for and validates for the stage(s) it names."""
import json

import pytest
from conftest import ROOT

from gan_colorizer.config import STAGE_DEFAULTS
from gan_colorizer.config_files import read_file
from gan_colorizer.train.cli import resolve_config

RECIPES = sorted((ROOT / "configs").glob("*.json"))


def test_configs_holds_the_recipes_of_the_issue():
    assert {p.name for p in RECIPES} >= {"tutorial-stage1.json", "tutorial-stage2.json", "pix2pix-unet.json",
                                         "zhang-classification.json", "cpu-smoke.json"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_has_a_comment_and_validates(path):
    d = json.loads(path.read_text())
    assert len(d.get("_comment", "")) > 40
    for stage in [d["stage"]] if "stage" in d else list(STAGE_DEFAULTS):
        values = read_file(path, stage)
        cfg = resolve_config(stage, {"config": str(path)})
        assert all(getattr(getattr(cfg, group), name) == value
                   for group, fields in d.items() if isinstance(fields, dict) for name, value in fields.items()
                   if not name.startswith("_")), path.name
        assert values


def test_the_recipes_state_the_published_settings():
    stage1, stage2 = (resolve_config(s, {"config": str(ROOT / "configs" / f"tutorial-stage{n}.json")})
                      for s, n in (("pretrain", 1), ("gan", 2)))
    assert (stage1.data.image_size, stage1.model.backbone, stage1.model.pretrained) == (256, "resnet18", True)
    assert (stage1.optim.lr, stage1.optim.recon_loss) == (1e-4, "l1")
    assert (stage2.optim.lr, stage2.optim.beta1, stage2.optim.lambda_l1) == (2e-4, 0.5, 100.0)
    pix2pix = resolve_config("gan", {"config": str(ROOT / "configs" / "pix2pix-unet.json")})
    assert pix2pix.model.generator == "unet" and pix2pix.run.init_generator is None
    zhang = resolve_config("pretrain", {"config": str(ROOT / "configs" / "zhang-classification.json")})
    assert (zhang.model.head, zhang.model.annealed_t, zhang.optim.rebalance_lambda) == ("classification", 0.38, 0.5)
