"""Runs compared: every run's hyper-parameters in TensorBoard's HParams plugin (read back with tensorboard's own
event reader and the plugin's protobufs), and gan-colorizer-runs' table of three runs that differ in two flags."""
import csv
import io

import pytest
from conftest import TINY, run_dirs_args

from gan_colorizer.config import VAL_METRICS, defaults, update
from gan_colorizer.inspect.runs import main
from gan_colorizer.train.monitor import Monitor


def hparams_of(run_dir):
    """(start info, experiment, end info) as TensorBoard's HParams plugin reads them from the run's events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    parsed = {tag: plugin_data_pb2.HParamsPluginData.FromString(data) for tag, data in content.items()}
    return (parsed["_hparams_/session_start_info"].session_start_info, parsed["_hparams_/experiment"].experiment,
            parsed["_hparams_/session_end_info"].session_end_info)


def fake_run(root, name, lr, batch_size, l1s, img_per_sec=10.0):
    """A run folder as training writes it, through the Monitor training uses: config, hparams, scalars."""
    cfg = defaults("pretrain")
    update(cfg, {"name": name, "lr": lr, "batch_size": batch_size})
    monitor = Monitor(root / name, log_every=1)
    monitor.add_config(cfg.to_dict())
    for step, l1 in enumerate(l1s, 1):
        monitor.scalars(step * 10, {"val/l1": l1, "perf/img_per_sec": img_per_sec})
    monitor.close()
    return root / name


def test_a_run_writes_its_config_and_validation_metrics_to_the_hparams_plugin(tmp_path):
    run = fake_run(tmp_path, "a", 3e-4, 8, [0.2, 0.1])
    start, experiment, end = hparams_of(run)
    assert start.hparams["optim.lr"].number_value == pytest.approx(3e-4)
    assert start.hparams["optim.batch_size"].number_value == 8
    assert start.hparams["model.generator"].string_value == "resunet"
    assert "run.resume" not in start.hparams  # None: left out, not written as a string
    assert {m.name.tag for m in experiment.metric_infos} == set(VAL_METRICS)
    from tensorboard.plugins.hparams import api_pb2
    assert end.status == api_pb2.STATUS_SUCCESS


def test_the_table_of_three_runs_shows_exactly_the_two_flags_that_differ(tmp_path, capsys):
    fake_run(tmp_path, "a", 1e-4, 16, [0.30, 0.20, 0.25], img_per_sec=12.0)
    fake_run(tmp_path, "b", 2e-4, 16, [0.28, 0.18])
    fake_run(tmp_path, "c", 2e-4, 8, [0.40])
    assert main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["run", "optim.batch_size", "optim.lr", "steps", "img/s", "wall time", "val/l1 last",
                      "val/l1 best"]
    first = [c.strip() for c in lines[2].strip("|").split("|")]
    assert first[:5] == ["a", "16", "0.0001", "30", "12"] and first[6:] == ["0.25", "0.2"]

    assert main([str(tmp_path / "b"), str(tmp_path / "c"), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["run"] for r in rows] == ["b", "c"] and "optim.lr" not in rows[0]  # b and c share their lr
    assert (rows[0]["optim.batch_size"], rows[0]["val/l1 best"], rows[1]["steps"]) == ("16", "0.18", "10")


def test_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path}: no training run in it (a run folder holds config.json and event files)"


@pytest.mark.slow
def test_three_real_training_runs_differing_in_two_flags(tmp_path, capsys):
    from gan_colorizer.train.cli import pretrain_main
    for name, lr, batch in (("a", "1e-4", "2"), ("b", "2e-4", "2"), ("c", "2e-4", "4")):
        args = [*TINY, *run_dirs_args(tmp_path, name), "--max-steps", "2", "--no-pretrained", "--lr", lr,
                "--batch-size", batch, "--device", "cpu"]
        assert pretrain_main(args) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "runs")]) == 0
    header = [c.strip() for c in capsys.readouterr().out.splitlines()[0].strip("|").split("|")]
    assert header[:3] == ["run", "optim.batch_size", "optim.lr"] and header[3] == "steps"
    assert hparams_of(tmp_path / "runs" / "c")[0].hparams["optim.batch_size"].number_value == 4
