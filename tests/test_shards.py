"""WebDataset shards: the writer (checked files, training's split, original bytes, atomic shards, index), the
training stream (equal batches per rank, shuffles from the seed, exact mid-epoch resume), bad input in one line,
evaluation from shards, and both stages trained from shards end to end."""
import io
from pathlib import Path
import json
import tarfile

import pytest
import torch
from conftest import TINY, dated_lines, make_photo_folder, run_dirs_args
from torch.utils.data import DataLoader

from gan_colorizer.data import shards
from gan_colorizer.config import DataConfig
from gan_colorizer.data.dataset import prepare_files
from gan_colorizer.errors import UserError
from gan_colorizer.data.shard_stream import ShardStream, ShardValStream, shard_loader, shard_split
from gan_colorizer.data.shards import ShardOptions, write_shards


SPLIT = {"val_fraction": 0.3, "seed": 3}  # the fixture's 15 photos: 3 validate (each file's side is its path's)


def _write(folder, out, **kw):
    return write_shards(ShardOptions(data=str(folder), out=str(out), **kw))


def _tar(path, members):
    """A tar of (name, bytes) members, as another tool might write it."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _jpeg(seed: int) -> bytes:
    from conftest import color_image
    buf = io.BytesIO()
    color_image(seed).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def shard_dir(tmp_path):
    """15 photos (one unreadable, one gray) as shards of 4: 12 train, 3 validate (SPLIT)."""
    photos = tmp_path / "photos"
    make_photo_folder(photos, 13)
    (photos / "sub").mkdir()
    make_photo_folder(photos / "sub", 2, start_seed=50)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    from PIL import Image
    Image.new("RGB", (40, 30), (90, 90, 90)).save(photos / "gray.png")
    return photos, tmp_path / "shards", _write(photos, tmp_path / "shards", shard_size=4, **SPLIT)


def _members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def test_writer_keeps_training_split_and_original_bytes_and_logs_the_unusable(shard_dir, caplog):
    photos, out, index = shard_dir
    split = prepare_files(DataConfig(data=str(photos), val_fraction=SPLIT["val_fraction"]), SPLIT["seed"])
    written = {role: {} for role in ("train", "val")}
    for shard in sorted(out.glob("*.tar")):
        written[shard.name.split("-")[0]].update(_members(shard))
    for role, files in (("train", split.train), ("val", split.val)):
        expect = {f"{shards.sample_key(p.relative_to(photos.resolve()))}{p.suffix}": p.read_bytes()
                  for p in map(Path, files)}
        assert written[role] == expect  # the same files, byte for byte (no re-encode)
    assert index["shards"] == {"train-000000.tar": 4, "train-000001.tar": 4, "train-000002.tar": 4,
                               "val-000000.tar": 3}
    assert json.loads((out / shards.INDEX).read_text())["shards"] == index["shards"]
    assert index["scan"]["train"]["skipped"][0]["path"].endswith("broken.jpg")
    assert [p.endswith("gray.png") for p in index["scan"]["train"]["gray_excluded"]] == [True]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_off_a_terminal_the_writer_says_how_far_it_is_in_dated_lines(tmp_path, caplog):
    make_photo_folder(tmp_path / "photos", 5)
    with caplog.at_level("INFO", logger="gan_colorizer"):
        _write(tmp_path / "photos", tmp_path / "shards", val_fraction=0.0)
    lines = dated_lines(caplog.messages, "shards")
    assert len(lines) == 1 and " shards 5/5 file, " in lines[0]
    assert len(dated_lines(caplog.messages, "scan")) == 1  # its scan too (tests/test_scan.py)


def test_writer_refuses_a_folder_with_shards_and_a_crash_leaves_no_half_shard(shard_dir, tmp_path, monkeypatch):
    photos, out, _ = shard_dir
    with pytest.raises(UserError, match="already holds shards"):
        _write(photos, out)
    calls = []

    def crash(self, obj):
        calls.append(obj["__key__"])
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(self, obj)
    import webdataset as wds  # what shards' writer uses (imported there when it writes)
    real = wds.TarWriter.write
    monkeypatch.setattr(wds.TarWriter, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        _write(photos, tmp_path / "crashed", shard_size=4)
    left = sorted(p.name for p in (tmp_path / "crashed").iterdir())
    assert left == ["train-000000.tar"]  # the first shard whole; the second never under its name; no index


def test_sample_keys_keep_folders_and_lose_dots():
    assert shards.sample_key(Path("n01/a.b.jpg")) == "n01/a_b"


def _batches(stream, workers=0, batch=2):
    loader = shard_loader(stream, batch, workers, False)
    return [pixels for pixels, _ in loader]


def _stream(out, rank=0, world=1, batch=2, seed=0, epoch_size=0, buffer=8):
    train = shards.expand(str(out), role="train")
    return ShardStream(train, shards.shard_counts(train), 32, 0.5, seed, epoch_size, rank, world, batch, buffer)


@pytest.mark.parametrize("workers", [0, 2])
def test_every_rank_yields_the_same_number_of_batches_however_the_shards_fall(shard_dir, workers):
    _, out, _ = shard_dir  # 12 training samples in 3 shards: 2 ranks get 2 and 1 shards
    counts = []
    for rank in range(2):
        stream = _stream(out, rank, 2, batch=2, epoch_size=11)
        counts.append(len(_batches(stream, workers)))
        assert stream.per_rank == 6 and len(stream) == 6
    assert counts == [3, 3]


def test_shard_order_and_shuffle_come_from_seed_and_epoch(shard_dir):
    _, out, _ = shard_dir
    first = torch.cat(_batches(_stream(out, seed=1)))
    assert torch.equal(first, torch.cat(_batches(_stream(out, seed=1))))
    other_seed = torch.cat(_batches(_stream(out, seed=2)))
    stream = _stream(out, seed=1)
    stream.set_epoch(1)
    next_epoch = torch.cat(_batches(stream))
    assert not torch.equal(first, other_seed) and not torch.equal(first, next_epoch)
    assert first.dtype == torch.uint8 and first.shape == (12, 3, 32, 32)


@pytest.mark.parametrize("workers,done", [(0, 2), (2, 3)])
def test_a_resumed_epoch_yields_the_batches_an_uninterrupted_one_would(shard_dir, workers, done):
    """Samples already trained on are skipped (not re-read as new batches); with 2 workers an odd number of batches
    done shifts which worker goes first, so that the order is kept too."""
    _, out, _ = shard_dir
    stream = _stream(out)
    stream.set_epoch(3)
    whole = _batches(stream, workers)
    stream.set_epoch(3, start=done * 2)
    rest = _batches(stream, workers)
    assert len(rest) == len(whole) - done
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[done:]))


def test_a_corrupt_sample_or_one_without_image_is_one_line_and_the_count_holds(tmp_path, capfd):
    good = [(f"s{i}.jpg", _jpeg(i)) for i in range(5)]
    _tar(tmp_path / "train-000000.tar", good[:2] + [("bad.jpg", b"junk"), ("meta.txt", b"x")] + good[2:])
    stream = ShardStream([tmp_path / "train-000000.tar"], [6], 32, 0.5, 0, 0, 0, 1, 2, 4)  # reads on past the end
    assert len(_batches(stream)) == 3
    err = capfd.readouterr().err
    assert "train-000000.tar:bad.jpg during training: not an image" in err and "train-000000.tar:meta: no image in the sample" in err
    val = [p for p, _ in DataLoader(ShardValStream([tmp_path / "train-000000.tar"], 32, 0, 1), batch_size=10)]
    assert val[0].shape[0] == 5


def test_a_shard_that_breaks_mid_read_is_one_line_and_no_readable_shard_stops_the_loader(tmp_path, capfd):
    whole = _tar(tmp_path / "whole.tar", [(f"s{i}.jpg", _jpeg(i)) for i in range(4)])
    with tarfile.open(whole) as tar:
        cut = tar.getmember("s2.jpg").offset_data + 100
    (tmp_path / "cut.tar").write_bytes(whole.read_bytes()[:cut])  # a disk that lost the rest from s2 on
    stream = ShardStream([tmp_path / "cut.tar"], [3], 32, 0.5, 0, 0, 0, 1, 1, 1)
    assert len(_batches(stream, batch=1)) == 3  # s0, s1, then s0 again in the next round
    assert capfd.readouterr().err.splitlines() == [f"warning: skipped the rest of {tmp_path / 'cut.tar'}: "
                                                   f"unexpected end of data"]
    (tmp_path / "junk.tar").write_bytes(b"\1" * 4096)
    with pytest.raises(RuntimeError, match="no readable sample in any of the 1 shards"):
        _batches(ShardStream([tmp_path / "junk.tar"], [4], 32, 0.5, 0, 0, 0, 1, 1, 1), batch=1)


def test_shards_whose_samples_never_decode_stop_the_stream_after_one_pass(tmp_path, capfd):
    _tar(tmp_path / "train-000000.tar", [(f"s{i}.jpg", b"junk %d" % i) for i in range(6)])
    stream = ShardStream([tmp_path / "train-000000.tar"], [6], 32, 0.5, 0, 0, 0, 1, 1)  # the default buffer
    with pytest.raises(RuntimeError, match="no sample of the 1 shards decodes as an image"):
        _batches(stream, batch=1)  # before the fix: endless, a warning line per sample read
    assert len(capfd.readouterr().err.splitlines()) == 6  # each sample once


def test_a_stop_signal_is_not_taken_for_a_broken_shard(tmp_path, monkeypatch):
    from gan_colorizer.data import shard_stream
    from gan_colorizer.train.guard import StopWaiting
    assert shard_stream._warn(tarfile.ReadError("unexpected end of data", "a.tar"))
    shard = _tar(tmp_path / "train-000000.tar", [("s0.jpg", _jpeg(0))])

    def stopped(*args, **kwargs):
        raise StopWaiting("SIGTERM")
    monkeypatch.setattr(shard_stream, "_open", stopped)
    with pytest.raises(StopWaiting):  # before the fix: 'skipped the rest of a shard: SIGTERM', then going on
        _batches(ShardStream([shard], [1], 32, 0.5, 0, 0, 0, 1, 1, 1), batch=1)


def test_validation_reads_each_sample_once_over_ranks_and_workers(shard_dir):
    _, out, _ = shard_dir
    train = shards.expand(str(out), role="train")
    seen = []
    for rank in range(2):
        for batch in _batches(ShardValStream(train, 32, rank, 2), workers=2, batch=1):
            seen.append(batch)
    assert len(seen) == 12
    assert len({tuple(b.flatten()[:64].tolist()) for b in seen}) == 12


def test_bad_input_is_one_line(tmp_path, shard_dir):
    _, out, _ = shard_dir
    with pytest.raises(UserError, match=r"2 of the 2 shards it names do not exist"):
        shards.expand(str(tmp_path / "none-{000000..000001}.tar"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "train-000000.tar").write_text("not a tar")
    with pytest.raises(UserError, match="train-000000.tar cannot be read as a tar file"):
        shards.shard_counts(shards.expand(str(tmp_path / "junk")))
    (out / "train-000001.tar").write_bytes(b"\0" * 10)  # the index still counts it: the first header is checked
    with pytest.raises(UserError, match="train-000001.tar cannot be read as a tar file"):
        shards.shard_counts(shards.expand(str(out)))
    with pytest.raises(UserError, match="give validation shards too"):
        shard_split(DataConfig(data=str(out / "train-000000.tar"), val_data=str(tmp_path)))


def test_the_commands_say_bad_shards_in_one_line_with_exit_code_2(shard_dir, tmp_path, capsys):
    from gan_colorizer.train.cli import main as train_main
    photos, out, _ = shard_dir
    assert shards.main(["--data", str(photos), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: --out {out}: already holds shards")
    assert shards.main(["--data", str(photos), "--out", str(tmp_path / "more"), "--shard-size", "100"]) == 0
    assert "14 training and 1 validation images in 2 shards" in capsys.readouterr().out  # --val-fraction 0.1, seed 0
    args = ["--data", str(tmp_path / "nope-{000000..000003}.tar"), "--no-pretrained", *run_dirs_args(tmp_path, "r")]
    assert train_main("pretrain", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --data {tmp_path / 'nope-{000000..000003}.tar'}: 4 of the 4 shards it names do not exist "
                   f"(e.g. {tmp_path / 'nope-000000.tar'})"]
    assert not (tmp_path / "runs" / "r").exists()  # a run that never started leaves no folder


def test_a_photo_folder_with_a_stray_tar_or_a_tar_in_its_name_stays_a_photo_folder(shard_dir, tmp_path):
    from gan_colorizer.evaluate.protocols import resolve_data
    _, out, _ = shard_dir
    photos = tmp_path / "photos2"
    make_photo_folder(photos, 3)
    _tar(photos / "backup.tar", [("old.jpg", _jpeg(9))])
    make_photo_folder(tmp_path / "avatar.tar.d", 2)
    assert not shards.is_shards(str(photos)) and not shards.is_shards(str(tmp_path / "avatar.tar.d"))
    assert len(resolve_data(str(photos))[0]) == 3 and len(resolve_data(str(tmp_path / "avatar.tar.d"))[0]) == 2
    only_tars = tmp_path / "other-tool"
    only_tars.mkdir()
    _tar(only_tars / "part0.tar", [("a.jpg", _jpeg(1))])
    assert shards.is_shards(str(out)) and shards.is_shards(str(only_tars))  # the writer's index, or only .tar files
    assert shards.is_shards(str(out / "train-{000000..000002}.tar")) and shards.is_shards(str(out / "val-000000.tar"))


def test_the_writer_refuses_what_training_refuses_and_an_unwritable_out_before_the_scan(shard_dir, tmp_path,
                                                                                         monkeypatch, capsys):
    photos, _, _ = shard_dir
    for fraction in (1.5, 1.0, -0.5):
        with pytest.raises(UserError, match=rf"--val-fraction {fraction}: must be in \[0, 1\)"):
            _write(photos, tmp_path / "f", val_fraction=fraction)
    with pytest.raises(UserError, match="photo_000.jpg: a file, not a folder"):
        _write(photos / "photo_000.jpg", tmp_path / "f")
    monkeypatch.setattr("gan_colorizer.data.dataset.prepare_files",
                        lambda *a: pytest.fail("scanned before --out was checked"))
    assert shards.main(["--data", str(photos), "--out", "/proc/x4"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --out /proc/x4: cannot be written "
                                                            "(No such file or directory)"]
    monkeypatch.undo()

    def full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(shards, "_write_shard", full)
    assert shards.main(["--data", str(photos), "--out", str(tmp_path / "full")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (f"error: --out {tmp_path / 'full' / 'train-000000.tar'}"
                                                               f": cannot be written (No space left on device)")


def test_bench_scale_names_an_unknown_part_in_one_line_and_defaults_to_the_committed_rows(capsys):
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "bench" / "scale.py"
    spec = importlib.util.spec_from_file_location("bench_scale", path)
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    assert scale.main(["--parts", "nope"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --parts nope: no such part (choose from per-image, "
                                                    "workers, folder-10000, folder-100000, folder-1000000, floor, "
                                                    "evaluate)"]
    committed = json.loads((path.parent / "results" / "scale-cpu.json").read_text())["rows"]
    cold = {r["files"] for r in committed if r["what"] == "folder" and "startup_stage1_cold_s" in r}
    default = scale.build_parser().parse_args([])
    assert cold == {n for n in default.sizes if n <= default.cold_startup_max} == {10_000, 100_000}


def test_split_finds_the_val_shards_beside_and_counts_from_the_index(shard_dir):
    _, out, _ = shard_dir
    split = shard_split(DataConfig(data=str(out / "train-{000000..000002}.tar")))
    assert [Path(p).name for p in split.val] == ["val-000000.tar"]
    assert split.summary["train"]["used"] == 12 and split.summary["val"]["used"] == 3
    assert shard_split(DataConfig(data=str(out))).train == split.train


def test_evaluation_names_samples_by_key_and_skips_what_breaks(shard_dir, tmp_path, caplog):
    from gan_colorizer.evaluate.protocols import EvalDataset, resolve_data
    _, out, _ = shard_dir
    _tar(out / "val-000001.tar", [("x/a.jpg", _jpeg(1)), ("x/b.jpg", b"junk"), ("c.json", b"{}")])
    (out / "val-000002.tar").write_text("not a tar")
    members, names = resolve_data(str(out / "val-{000000..000002}.tar"))
    assert len(names) == 5 and names[-2:] == ["x/a.jpg", "x/b.jpg"]
    assert "val-000001.tar:c: no image" in caplog.text and "val-000002.tar" in caplog.text
    items = [EvalDataset(members, "center-crop", 32)[i] for i in range(5)]
    assert items[3]["pixels"].shape == (3, 32, 32)
    assert "not an image" in items[4]["reason"] and str(members[4]).endswith("val-000001.tar:x/b.jpg")


@pytest.mark.slow
def test_evaluating_the_val_shards_scores_as_evaluating_their_files(shard_dir, tmp_path, tiny_checkpoint):
    """The same images, the same numbers: the val shards against a folder of the files they were written from."""
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    photos, out, _ = shard_dir
    split = prepare_files(DataConfig(data=str(photos), val_fraction=SPLIT["val_fraction"]), SPLIT["seed"])
    folder = tmp_path / "val_files"
    folder.mkdir()
    for path in map(Path, split.val):
        copy = folder / path.relative_to(photos.resolve())
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    common = dict(checkpoints=[str(tiny_checkpoint)], image_size=32, num_workers=0, device="cpu", download=False)
    by_shards = evaluate(EvalOptions(data=str(out / "val-{000000..000000}.tar"), out=str(tmp_path / "e1"), **common))
    by_files = evaluate(EvalOptions(data=str(folder), out=str(tmp_path / "e2"), **common))
    assert by_shards["n_images"] == by_files["n_images"] == 3
    rows = [sorted((tmp_path / e / "metrics.csv").read_text().splitlines()) for e in ("e1", "e2")]
    assert rows[0] == rows[1]  # every image's every metric, named alike (keys are the file names here)


@pytest.mark.slow
def test_both_stages_train_from_shards_and_a_resume_gives_the_same_weights(shard_dir, tmp_path):
    """Stage 1 then stage 2 from shards (2 loader workers); stage 2 stopped mid-epoch after 3 steps and resumed to
    5 matches 5 straight steps weight for weight."""
    from test_training import checkpoint_weights

    from gan_colorizer.train.cli import main
    _, out, _ = shard_dir
    common = ["--data", str(out / "train-{000000..000002}.tar"), *TINY, "--num-workers", "2", "--image-size", "32",
              "--amp", "off"]
    assert main("pretrain", [*common, "--max-steps", "2", *run_dirs_args(tmp_path, "s1")]) == 0
    init = ["--init-generator", str(tmp_path / "checkpoints" / "s1" / "last.pt")]
    assert main("gan", [*common, *init, "--max-steps", "5", *run_dirs_args(tmp_path, "straight")]) == 0
    assert main("gan", [*common, *init, "--max-steps", "3", *run_dirs_args(tmp_path, "split")]) == 0
    assert main("gan", ["--resume", str(tmp_path / "checkpoints" / "split" / "last.pt"), "--max-steps", "5"]) == 0
    straight, resumed = (checkpoint_weights(tmp_path / "checkpoints" / n / "last.pt") for n in ("straight", "split"))
    assert [k for k in straight if not torch.equal(straight[k], resumed[k])] == []
    data = json.loads((tmp_path / "runs" / "straight" / "data.json").read_text())
    assert data["train"]["used"] == 12 and data["val"]["used"] == 3


@pytest.mark.system
def test_two_processes_train_a_whole_epoch_from_shards(shard_dir, tmp_path):
    """torchrun, 2 processes (gloo): 3 shards fall 2 / 1 over the ranks, yet both take 3 steps of 2 images and
    validate; an unequal count would hang the all-reduce (the test's timeout) instead of finishing."""
    from test_distributed import _torchrun
    _, out, _ = shard_dir
    result = _torchrun(2, "pretrain_generator.py", "--data", str(out / "train-{000000..000002}.tar"), "--epochs", "1",
                       "--image-size", "32", "--batch-size", "4", "--num-workers", "1", "--amp", "off",
                       "--no-pretrained", "--log-every", "1", "--image-every", "100", *run_dirs_args(tmp_path, "ddp"))
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(tmp_path / "checkpoints" / "ddp" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["epoch"] == 1
    assert "val/psnr" in ckpt["metrics"] and "(3 shards); validation:" in result.stdout and "(1 shard);" in result.stdout
