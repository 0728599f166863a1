import json

import pytest

from gan_colorizer.config import Config, build_parser, defaults, explicit_flags, update, validate
from gan_colorizer.errors import UserError


def test_stage_defaults_follow_the_papers():
    assert defaults("pretrain").optim.lr == 1e-4
    gan = defaults("gan")
    assert (gan.optim.lr, gan.optim.beta1, gan.optim.beta2, gan.optim.lambda_l1) == (2e-4, 0.5, 0.999, 100.0)


def test_cli_flags_cover_the_config_and_only_given_flags_are_explicit():
    parser = build_parser("gan", "")
    explicit = explicit_flags(parser, ["--lr", "3e-4", "--no-channels-last", "--gan-mode", "hinge"])
    assert explicit == {"lr": 3e-4, "channels_last": False, "gan_mode": "hinge"}
    cfg = update(defaults("gan"), explicit)
    assert cfg.optim.lr == 3e-4 and cfg.optim.gan_mode == "hinge" and not cfg.optim.channels_last


def test_stage_1_has_no_gan_flags():
    parser = build_parser("pretrain", "")
    with pytest.raises(SystemExit):
        parser.parse_args(["--lambda-l1", "10"])
    help_text = parser.format_help()
    for flag in ("--data", "--val-data", "--val-fraction", "--image-size", "--batch-size", "--epochs", "--max-steps",
                 "--lr", "--num-workers", "--device", "--amp", "--grad-accum", "--seed", "--name", "--runs-dir",
                 "--checkpoints-dir", "--resume", "--log-every", "--image-every"):
        assert flag in help_text


def test_config_round_trips_through_json_and_ignores_unknown_keys():
    cfg = update(defaults("gan"), {"backbone": "resnet34", "image_size": 128})
    d = json.loads(json.dumps(cfg.to_dict()))
    d["model"]["from_the_future"] = 1
    back = Config.from_dict(d)
    assert back == cfg


@pytest.mark.parametrize("values, flag", [({"image_size": 100}, "--image-size"),
                                          ({"generator": "unet", "image_size": 128}, "multiple of 256"),
                                          ({"val_fraction": 1.0}, "--val-fraction"),
                                          ({"batch_size": 0}, "--batch-size")])
def test_invalid_values_name_the_flag(values, flag):
    with pytest.raises(UserError, match=flag):
        validate(update(defaults("pretrain"), values))
