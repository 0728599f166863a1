"""The train / validation split: each file's side from a hash of its path below the folder (a change to the folder
moves only the files changed; the fraction holds; the same everywhere); old runs keep their lists; stage 2 warns when
it validates on photos stage 1 trained on."""
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, make_photo_folder, run_dirs_args

from gan_colorizer import split as splits
from gan_colorizer.config import DataConfig
from gan_colorizer.data.dataset import prepare_files, split_digest

UNET = ["--generator", "unet", "--unet-filters", "2", "--image-size", "256", "--batch-size", "2", "--num-workers",
        "0", "--amp", "off", "--log-every", "1", "--image-every", "100", "--epoch-size", "2"]


def _names(n, seed=0):
    rng = random.Random(seed)
    return [f"/d/n{rng.randrange(1000):04d}/img_{i:07d}.JPEG" for i in range(n)]


def _sides(paths, root, fraction=0.05, seed=0):
    train, val, _ = splits.split_by_path(sorted(paths), root, fraction, seed)
    return set(train), set(val)


def test_a_change_to_the_folder_moves_only_the_files_changed(tmp_path):
    """Through prepare_files, on a folder: remove one photo and add two; every other photo stays on its side."""
    folder = tmp_path / "p"
    make_photo_folder(folder, 40)
    before = prepare_files(DataConfig(data=str(folder), val_fraction=0.25), 0)
    gone = Path(before.val[0])
    gone.unlink()
    make_photo_folder(folder / "new", 2, start_seed=90)
    after = prepare_files(DataConfig(data=str(folder), val_fraction=0.25), 0)
    kept = lambda files: {p for p in files if Path(p).parent == folder.resolve()}  # noqa: E731
    assert kept(after.val) == set(before.val) - {str(gone)} and kept(after.train) == set(before.train)
    assert len(before.val) > 3


@pytest.mark.parametrize("change", ["add", "remove"])
@pytest.mark.parametrize("share", [0.001, 0.01])
def test_adding_or_removing_a_share_of_a_large_list_moves_no_other_file(change, share):
    names = _names(20_000)
    rng = random.Random(1)
    changed = set(rng.sample(names, int(len(names) * share))) if change == "remove" else \
        {f"/d/new/{i}.jpg" for i in range(int(len(names) * share))}
    now = [n for n in names if n not in changed] if change == "remove" else names + sorted(changed)
    (train0, val0), (train1, val1) = _sides(names, "/d"), _sides(now, "/d")
    assert val1 - changed == val0 - changed and train1 - changed == train0 - changed


@pytest.mark.parametrize(("fraction", "seed"), [(0.01, 0), (0.05, 7), (0.3, 1)])
def test_the_validation_fraction_holds_on_a_large_list(fraction, seed):
    n = 100_000
    _, val = _sides(_names(n, seed=3), "/d", fraction, seed)
    sigma = math.sqrt(n * fraction * (1 - fraction))  # a binomial draw: each file on its own
    assert abs(len(val) - n * fraction) < 4 * sigma


def test_seeds_draw_different_samples_and_tiny_folders_keep_a_file_on_each_side():
    names = _names(2_000)
    assert _sides(names, "/d", 0.1, 0)[1] != _sides(names, "/d", 0.1, 1)[1]
    for n in (2, 3, 5):
        for fraction in (0.01, 0.5, 0.99):
            train, val = _sides(names[:n], "/d", fraction)
            assert train and val and not train & val and len(train) + len(val) == n


def test_the_side_depends_on_the_path_below_the_folder_only_and_is_the_same_in_every_process(tmp_path):
    names = _names(500)
    moved = [n.replace("/d/", "/mnt/other/d/", 1) for n in names]
    here = sorted(_sides(names, "/d")[1])
    assert sorted(p.replace("/mnt/other/d/", "/d/", 1) for p in _sides(moved, "/mnt/other/d")[1]) == here
    code = ("import sys; from gan_colorizer.split import split_by_path; "
            "print('\\n'.join(split_by_path(sys.argv[1:], '/d', 0.05, 0)[1]))")
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, *sorted(names)], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}, check=True)
        assert out.stdout.split() == here


def test_the_old_rule_splits_as_shuffling_positions_did():
    """Runs started before the hash rule rescan with it: a seeded shuffle of positions in the sorted list."""
    paths = sorted(Path(f"/d/{n}") for n in ["b/x.jpg", "a.jpg", "a/z.jpg", "a-b.jpg", "B.jpg"])
    for seed in range(5):
        order = list(paths)
        random.Random(seed).shuffle(order)
        n_val = round(len(order) * 0.34)
        expected = [[str(p) for p in sorted(part)] for part in (order[n_val:], order[:n_val])]
        assert list(splits.split_by_position([str(p) for p in paths], 0.34, seed)) == expected


def test_the_training_set_counts_exactly_the_files_trained_on():
    names = _names(5_000)
    train, val, hashes = splits.split_by_path(names, "/d", 0.1, 0)
    carried = splits.training_set(train, "/d", hashes)
    assert torch.equal(carried["hashes"], splits.training_set(train, "/d")["hashes"])
    assert splits.count_trained_on(carried, val) == 0
    assert splits.count_trained_on(carried, val[:7] + train[:30] + ["/elsewhere/x.jpg"]) == 30


# ------------------------------------------------------------------------------------------------ end to end
def _start(flags):
    from gan_colorizer.train import setup as train_setup
    from gan_colorizer.config import explicit_flags
    from gan_colorizer.train.cli import build_parser, resolve_config
    return train_setup.start(resolve_config("gan", explicit_flags(build_parser("gan"), flags)))


def _close(run):
    run.monitor.close()
    run.lock.release()


def _lines(path):
    return path.read_text().splitlines()


@pytest.mark.slow
def test_stage_2_warns_with_counts_when_it_validates_on_photos_stage_1_trained_on(tmp_path, caplog):
    from gan_colorizer.train.cli import main
    data = tmp_path / "photos"
    make_photo_folder(data, 30)
    common = ["--data", str(data), "--val-fraction", "0.3", *UNET]
    assert main("pretrain", [*common, "--max-steps", "1", *run_dirs_args(tmp_path, "s1")]) == 0
    stage1 = tmp_path / "checkpoints" / "s1" / "last.pt"
    make_photo_folder(data / "later", 3, start_seed=70)  # the folder changes after stage 1
    (data / Path(_lines(tmp_path / "runs" / "s1" / "val_files.txt")[0]).name).unlink()
    caplog.clear()
    run = _start([*common, "--init-generator", str(stage1), *run_dirs_args(tmp_path, "same")])
    _close(run)
    assert "were training images of the run" not in caplog.text  # the changed files moved, nothing else
    trained = set(_lines(tmp_path / "runs" / "s1" / "train_files.txt"))
    for name, flags in (("seed", ["--seed", "5"]), ("fraction", ["--val-fraction", "0.5"])):
        caplog.clear()
        _close(_start([*common, *flags, "--init-generator", str(stage1), *run_dirs_args(tmp_path, name)]))
        val = _lines(tmp_path / "runs" / name / "val_files.txt")
        seen = len(trained & set(val))  # counted from the run folders' own lists
        assert seen and f"warning: {seen} of the {len(val)} validation images of this run were training images " \
                         f"of the run of --init-generator {stage1}" in caplog.text


@pytest.mark.slow
def test_a_run_started_before_the_hash_rule_resumes_with_its_lists_and_stage_2_keeps_its_rule(tmp_path, caplog):
    """A stage-1 run as today's code left it before the change (lists by position, a checkpoint without split rule
    or training set) resumes with its lists, rescans to the same lists when they are gone, and a stage 2 from it
    validates on what it validated on, or says with counts what it trained on once the folder changed."""
    from gan_colorizer.train.cli import main
    data = tmp_path / "photos"
    make_photo_folder(data, 30)
    common = ["--data", str(data), "--val-fraction", "0.3", *UNET]
    assert main("pretrain", [*common, "--max-steps", "1", *run_dirs_args(tmp_path, "old")]) == 0
    runs, last = tmp_path / "runs" / "old", tmp_path / "checkpoints" / "old" / "last.pt"
    names = sorted(str(p) for p in data.resolve().iterdir())
    order = list(range(len(names)))  # the old rule, written out here: a shuffle of positions
    random.Random(0).shuffle(order)
    old_train, old_val = [names[i] for i in sorted(order[9:])], [names[i] for i in sorted(order[:9])]
    (runs / "train_files.txt").write_text("".join(f"{p}\n" for p in old_train))
    (runs / "val_files.txt").write_text("".join(f"{p}\n" for p in old_val))
    ckpt = torch.load(last, weights_only=True)
    for key in ("split_rule", "train_set"):
        del ckpt[key]
    ckpt["data_digest"] = splits.lists_digest(old_train, old_val)
    torch.save(ckpt, last)

    for lists_kept in (True, False):
        if not lists_kept:
            (runs / "train_files.txt").unlink()
        caplog.clear()
        run = _start_resume(last)
        assert run.split_rule == splits.BY_POSITION and "not those of the checkpoint" not in caplog.text
        assert (run.data_digest, run.training_set["root"]) == (ckpt["data_digest"], str(data.resolve()))
        _close(run)
    caplog.clear()
    _close(_start([*common, "--init-generator", str(last), *run_dirs_args(tmp_path, "s2")]))
    assert _lines(tmp_path / "runs" / "s2" / "val_files.txt") == old_val
    assert "chosen as the run of --init-generator" in caplog.text and "were training images" not in caplog.text
    make_photo_folder(data / "a", 2, start_seed=80)  # sorts first: every position moves
    caplog.clear()
    _close(_start([*common, "--init-generator", str(last), *run_dirs_args(tmp_path, "s2b")]))
    val = _lines(tmp_path / "runs" / "s2b" / "val_files.txt")
    seen = len(set(old_train) & set(val))
    assert seen and f"{seen} of the {len(val)} validation images" in caplog.text


def _start_resume(last):
    from gan_colorizer.train import setup as train_setup
    from gan_colorizer.train.cli import resolve_config
    return train_setup.start(resolve_config("pretrain", {"resume": str(last)}))
