import json
import re

import pytest

from gan_colorizer import config_files
from gan_colorizer.config import RENAMED, Config, build_parser, defaults, explicit_flags, update, validate
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


def write_json(path, d) -> str:
    path.write_text(json.dumps(d))
    return str(path)


def fake_checkpoint(path, cfg: Config) -> str:
    """A file checkpoint.load accepts, holding only a config: enough for resolve_config."""
    from gan_colorizer.checkpoint import save_atomic
    save_atomic({"format_version": 1, "stage": cfg.stage, "config": cfg.to_dict(), "generator": {}}, path)
    return str(path)


def test_a_config_file_round_trips_exactly_and_flags_given_override_it(tmp_path):
    from gan_colorizer.train.cli import resolve_config
    cfg = update(defaults("gan"), {"backbone": "resnet34", "image_size": 128, "lambda_l1": 10.0, "data": "/photos",
                                   "ema_decay": 0.999, "name": "x", "max_steps": 7, "amp": "off"})
    path = write_json(tmp_path / "config.json", cfg.to_dict())
    assert resolve_config("gan", {"config": path}) == cfg
    given = resolve_config("gan", {"config": path, "lr": 5e-5, "backbone": "resnet18"})
    assert (given.optim.lr, given.model.backbone, given.data.image_size) == (5e-5, "resnet18", 128)
    partial = write_json(tmp_path / "recipe.json", {"_comment": "why", "optim": {"lambda_l1": 50}})
    assert resolve_config("gan", {"config": partial}) == update(defaults("gan"), {"lambda_l1": 50.0})


def test_config_file_precedence_over_resume_and_init_generator(tmp_path):
    """Defaults <- the resumed run's config or the stage-1 architecture <- the file <- flags given."""
    from gan_colorizer.train.cli import resolve_config
    saved = update(defaults("gan"), {"epochs": 5, "batch_size": 4, "backbone": "resnet34"})
    last = fake_checkpoint(tmp_path / "last.pt", saved)
    recipe = write_json(tmp_path / "recipe.json", {"stage": "gan", "optim": {"epochs": 9, "lr": 1e-5}})
    cfg = resolve_config("gan", {"config": recipe, "resume": last, "lr": 3e-5})
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.optim.batch_size, cfg.model.backbone) == (9, 3e-5, 4, "resnet34")
    assert cfg.run.resume == last
    stage1 = fake_checkpoint(tmp_path / "s1.pt", update(defaults("pretrain"), {"backbone": "resnet34", "lr": 1e-3}))
    cfg = resolve_config("gan", {"config": recipe, "init_generator": stage1})
    assert (cfg.model.backbone, cfg.optim.lr, cfg.optim.epochs) == ("resnet34", 1e-5, 9)  # architecture, not lr
    arch = write_json(tmp_path / "arch.json", {"model": {"backbone": "resnet50"}})
    assert resolve_config("gan", {"config": arch, "init_generator": stage1}).model.backbone == "resnet50"
    from_file = write_json(tmp_path / "from_file.json", {"run": {"init_generator": stage1}})
    assert resolve_config("gan", {"config": from_file}).model.backbone == "resnet34"


def test_init_generator_copies_every_architecture_field_and_flags_still_override(tmp_path):
    import dataclasses

    from gan_colorizer.config import ModelConfig
    from gan_colorizer.train.cli import ARCH_FLAGS, resolve_config
    weights_sources = {"backbone_weights", "pretrained"}  # how stage 1's body started, not what it is
    generator_fields = {f.name for f in dataclasses.fields(ModelConfig) if not f.metadata.get("stages")}
    assert set(ARCH_FLAGS) == generator_fields - weights_sources
    stage1 = update(defaults("pretrain"), {"generator": "unet", "unet_filters": 32, "unet_dropout": 0.2,
                                           "head": "classification", "annealed_t": 0.2, "backbone": "resnet34"})
    path = fake_checkpoint(tmp_path / "s1.pt", stage1)
    cfg = resolve_config("gan", {"init_generator": path})
    assert {f: getattr(cfg.model, f) for f in ARCH_FLAGS} == {f: getattr(stage1.model, f) for f in ARCH_FLAGS}
    assert resolve_config("gan", {"init_generator": path, "annealed_t": 0.5}).model.annealed_t == 0.5


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read the config file"),
    ("{not json", "not a JSON config"),
    ("[1, 2]", "not a JSON config"),
    ('{"stage": "finetune"}', "unknown stage 'finetune'"),
    ('{"stage": "pretrain"}', "a pretrain config cannot configure a gan run"),
    ('{"optimizer": {}}', "unknown key 'optimizer'"),
    ('{"optim": {"learning_rate": 1}}', "unknown field optim.learning_rate"),
    ('{"optim": {"lr": "fast"}}', "optim.lr = 'fast': expected float"),
    ('{"optim": {"epochs": 2.5}}', "optim.epochs = 2.5: expected int"),
    ('{"optim": {"amp": "fp8"}}', "optim.amp = 'fp8': expected one of auto, off, bf16, fp16"),
    ('{"optim": {"channels_last": 1}}', "optim.channels_last = 1: expected bool"),
    ('{"data": {"image_size": 100}}', "--image-size 100: must be a positive multiple of 32"),
])
def test_a_bad_config_file_is_one_line_naming_the_file(tmp_path, content, reason):
    from gan_colorizer.train.cli import resolve_config
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as e:
        resolve_config("gan", {"config": str(path)})
    assert str(e.value).startswith(f"{path}: ") and reason in str(e.value) and "\n" not in str(e.value)


def version_1(cfg: Config) -> dict:
    """cfg as a checkpoint or config.json written before config version 2 stored it (no "version" key)."""
    d = cfg.to_dict()
    del d["version"]
    return d


def test_a_stage_2_perceptual_weight_saved_before_version_2_loads_as_the_same_loss():
    """Version 1 multiplied stage 2's perceptual term by the lambda: its 0.1 with lambda 100 is today's 10."""
    gan = update(defaults("gan"), {"perceptual_weight": 0.1, "lambda_l1": 100.0})
    assert Config.from_dict(version_1(gan)).optim.perceptual_weight == pytest.approx(10.0)
    classes = update(defaults("gan"), {"perceptual_weight": 0.1, "head": "classification", "lambda_ce": 2.0})
    assert Config.from_dict(version_1(classes)).optim.perceptual_weight == pytest.approx(0.2)
    stage1 = update(defaults("pretrain"), {"perceptual_weight": 0.1})  # stage 1 never multiplied it
    assert Config.from_dict(version_1(stage1)).optim.perceptual_weight == 0.1
    assert Config.from_dict(gan.to_dict()) == gan  # today's files round-trip unchanged


def test_resuming_a_version_1_run_keeps_its_loss_and_says_so(tmp_path, caplog):
    from gan_colorizer.checkpoint import save_atomic
    from gan_colorizer.train.cli import resolve_config
    old = update(defaults("gan"), {"perceptual_weight": 0.05})
    path = tmp_path / "last.pt"
    save_atomic({"format_version": 1, "stage": "gan", "config": version_1(old), "generator": {}}, path)
    with caplog.at_level("INFO", logger="gan_colorizer"):
        assert resolve_config("gan", {"resume": str(path)}).optim.perceptual_weight == pytest.approx(5.0)
    assert f"note: {path} is from before config version 2" in caplog.text and "--perceptual-weight 5 now" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="gan_colorizer"):
        assert resolve_config("gan", {"resume": str(path), "perceptual_weight": 0.5}).optim.perceptual_weight == 0.5
    assert "config version" not in caplog.text


def test_a_config_file_is_read_in_todays_weights_unless_it_says_version_1(tmp_path, caplog):
    from gan_colorizer.config_files import read_file
    recipe = {"stage": "gan", "optim": {"perceptual_weight": 0.5}}
    with caplog.at_level("INFO", logger="gan_colorizer"):
        assert read_file(write_json(tmp_path / "a.json", recipe), "gan")["perceptual_weight"] == 0.5
    assert 'meant 50 in today\'s weights: add "version": 1' in caplog.text  # an old run's config.json would
    caplog.clear()
    with caplog.at_level("INFO", logger="gan_colorizer"):
        assert read_file(write_json(tmp_path / "b.json", {**recipe, "version": 2}), "gan")["perceptual_weight"] == 0.5
        assert read_file(write_json(tmp_path / "c.json", {**recipe, "version": 1}), "gan")["perceptual_weight"] == 50
    assert caplog.text == ""
    for bad in (3, 0, "2", True, 1.5):
        with pytest.raises(UserError, match=r"d\.json: version .*: this gan_colorizer reads config versions 1 to 2"):
            read_file(write_json(tmp_path / "d.json", {**recipe, "version": bad}), "gan")


def test_every_numeric_field_has_a_declared_range():
    import dataclasses
    import typing

    from gan_colorizer.config import GROUPS
    from gan_colorizer.config_checks import RANGES
    from gan_colorizer.options import value_type
    numeric = {f.name for cls in GROUPS.values() for f in dataclasses.fields(cls)
               if value_type(typing.get_type_hints(cls)[f.name]) in (int, float)}
    assert numeric == set(RANGES)
    for name, allowed in RANGES.items():  # every default lies in its range (None: another field's value, --d-lr)
        cfg = defaults("gan")
        group = next(g for g in (cfg.data, cfg.model, cfg.optim, cfg.run) if hasattr(g, name))
        assert getattr(group, name) is None or getattr(group, name) in allowed, name


OUT_OF_RANGE = [  # (group, field, value, as the message shows it, the range)
    ("optim", "beta1", 5, "5.0", "[0, 1)"), ("model", "unet_dropout", 2, "2.0", "[0, 1)"),
    ("data", "loader_timeout", float("inf"), "inf", "[0, 604800]"), ("optim", "lr", float("inf"), "inf", "(0, 1]"),
    ("optim", "lr", float("nan"), "nan", "(0, 1]"), ("data", "image_size", 32_000_000, "32000000", "[32, 4096]"),
    ("run", "seed", -1, "-1", "[0, 4.29497e+09]"), ("optim", "epochs", 0, "0", "[1, 1e+06]"),
    ("data", "num_workers", -2, "-2", "[-1, 1024], -1 for auto"), ("model", "d_layers", 40, "40", "[1, 8]")]


@pytest.mark.parametrize("group, name, value, shown, allowed", OUT_OF_RANGE)
def test_a_config_file_value_out_of_range_is_one_line_naming_the_file_field_and_range(tmp_path, group, name, value,
                                                                                      shown, allowed):
    """json writes inf / nan as Infinity / NaN, which Python's reader takes: they passed the type check before."""
    from gan_colorizer.train.cli import resolve_config
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({group: {name: value}}))
    with pytest.raises(UserError) as e:
        resolve_config("gan", {"config": str(path)})
    assert str(e.value) == f"{path}: {group}.{name} = {shown}: must be in {allowed}"


@pytest.mark.parametrize("group, name, value, shown, allowed", OUT_OF_RANGE)
def test_a_flag_out_of_range_is_one_line_naming_the_flag_and_range(group, name, value, shown, allowed):
    import dataclasses

    from gan_colorizer.config import GROUPS
    from gan_colorizer.options import flag_name
    flag = flag_name(next(f for f in dataclasses.fields(GROUPS[group]) if f.name == name))
    parsed = explicit_flags(build_parser("gan", ""), [f"{flag}={value}"])
    with pytest.raises(UserError, match=rf"^{flag} {parsed[name]}: must be in {re.escape(allowed)}$"):
        validate(update(defaults("gan"), parsed))


# a run that would be over in one short step if it started (it must not)
ONE_STEP = ["--no-pretrained", "--max-steps", "1", "--epochs", "1", "--image-size", "32", "--batch-size", "2",
            "--num-workers", "0", "--amp", "off"]


def test_lr_infinity_stops_the_run_before_anything_is_written(tmp_path, capsys):
    from gan_colorizer.train.cli import pretrain_main
    code = pretrain_main(["--lr", "inf", "--runs-dir", str(tmp_path / "runs"), "--checkpoints-dir",
                          str(tmp_path / "checkpoints"), *ONE_STEP])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: --lr inf: must be in (0, 1]" and list(tmp_path.iterdir()) == []


def test_a_huge_or_deeply_nested_config_file_is_one_line(tmp_path):
    from gan_colorizer.train.cli import resolve_config
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(300 << 20)  # sparse: 300 MB that take no disk
    with pytest.raises(UserError, match=rf"^{huge}: not a config file \(larger than 1024 KB\)$"):
        resolve_config("gan", {"config": str(huge)})
    deep = tmp_path / "deep.json"
    deep.write_text('{"optim": {"lr": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    with pytest.raises(UserError, match=rf"^{deep}: not a JSON config file \(nested too deeply\)$"):
        resolve_config("gan", {"config": str(deep)})


BAD_NAMES = ["../../x", "/tmp/elsewhere", "", "a/b", "..", ".hidden", "x\x1b[2J", "name.", "-rf", "x" * 101]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_run_name_that_is_not_one_folder_name_is_refused(tmp_path, capsys, name):
    from gan_colorizer.train.cli import pretrain_main
    code = pretrain_main([f"--name={name}", "--runs-dir", str(tmp_path / "runs"), "--checkpoints-dir",
                          str(tmp_path / "checkpoints"), *ONE_STEP])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: --name {name!r}"[:120]) and "a run name is a folder name" in err
    assert len(err.splitlines()) == 1 and list(tmp_path.iterdir()) == []
    path = write_json(tmp_path / "run.json", {"run": {"name": name}})
    with pytest.raises(UserError, match=rf"^{path}: run.name = "):
        config_files.read_file(path, "pretrain")


def test_run_names_that_are_one_folder_are_accepted_and_checked_where_folders_are_made(tmp_path):
    from gan_colorizer.config_checks import check_run_name
    from gan_colorizer.train.setup import run_paths
    for name in ("coco-l1", "pretrain-20261207-101500", "run 2", "résumé_v1.5", "a+b=c,d@e"):
        assert check_run_name(name) == name
    cfg = update(defaults("pretrain"), {"runs_dir": str(tmp_path / "runs")})
    cfg.run.name = "../../x"  # set past validate(): the folders are still never made from it
    with pytest.raises(UserError, match="a run name is a folder name"):
        run_paths(cfg)


def test_the_discriminators_old_names_still_work_in_flags_files_and_saved_runs(tmp_path, capsys, monkeypatch):
    from gan_colorizer import console
    monkeypatch.setattr(console, "_SAID", set())
    parser = build_parser("gan", "")
    given = explicit_flags(parser, ["--disc-filters", "8", "--disc-layers", "2", "--disc-norm", "spectral"])
    assert given == {"d_filters": 8, "d_layers": 2, "d_norm": "spectral"}
    assert "note: --disc-filters is now called --d-filters" in capsys.readouterr().err
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"stage": "gan", "model": {"disc_norm": "instance", "disc_filters": 16}}))
    assert config_files.read_file(path, "gan") == {"d_norm": "instance", "d_filters": 16}
    saved = defaults("gan").to_dict()
    saved["model"] = {("disc_" + k[2:] if k in RENAMED.values() else k): v for k, v in saved["model"].items()}
    saved["model"].update(disc_filters=8, disc_layers=2, disc_norm="none")  # a run saved before the rename
    model = Config.from_dict(saved).model
    assert (model.d_filters, model.d_layers, model.d_norm) == (8, 2, "none")


@pytest.mark.parametrize("flags, message", [
    (["--gp-weight", "5"], "--gp-weight 5: only --gan-mode wgangp reads it (the mode is vanilla)"),
    (["--lr-gamma", "0.5"], "--lr-gamma 0.5: only --lr-policy step reads it (the policy is constant)"),
    (["--hint-points", "31"], "--hint-points 31: only a --hints model reads it")])
def test_a_knob_the_runs_mode_does_not_read_is_refused_not_ignored(flags, message):
    with pytest.raises(UserError, match=re.escape(message)):
        validate(update(defaults("gan"), explicit_flags(build_parser("gan", ""), flags)))
    ok = {"--gp-weight": ["--gan-mode", "wgangp"], "--lr-gamma": ["--lr-policy", "step", "--lr-milestones", "2"],
          "--hint-points": ["--hints"]}
    validate(update(defaults("gan"), explicit_flags(build_parser("gan", ""), flags + ok[flags[0]])))


def test_milestones_may_be_a_json_list_in_a_config_file(tmp_path):
    path = tmp_path / "step.json"
    path.write_text(json.dumps({"optim": {"epochs": 30, "lr_policy": "step", "lr_milestones": [10, 20]}}))
    assert config_files.read_file(path, "pretrain")["lr_milestones"] == "10,20"
    path.write_text(json.dumps({"optim": {"lr_policy": "step", "lr_milestones": [10, "x"]}}))
    with pytest.raises(UserError, match="optim.lr_milestones = \\[10, 'x'\\]: expected str"):
        config_files.read_file(path, "pretrain")


@pytest.mark.parametrize("flags, message", [
    (["--generator", "unet", "--backbone", "convnext_tiny"], "--backbone convnext_tiny: only --generator resunet stands "
                                                             "on a body (the generator is unet)"),
    (["--generator", "resnet9", "--backbone-weights", "r.pth"], "--backbone-weights r.pth: only --generator resunet"),
    (["--no-pretrained", "--backbone-weights", "r.pth"], "--backbone-weights r.pth with --no-pretrained: the body "
                                                         "would load the file; leave out one of the two")])
def test_body_flags_a_run_would_ignore_are_refused(flags, message):
    with pytest.raises(UserError, match=re.escape(message)):
        validate(update(defaults("pretrain"), explicit_flags(build_parser("pretrain", ""), flags)))
