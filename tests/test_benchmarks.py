"""The benchmark splits: each list's count, uniqueness and name pattern read straight from the committed files, the
rule-made ones against the rule's ends, a folder missing files in one line, and evaluate.py --benchmark on a tiny
folder laid out like the real one (ImageNet val in synset folders; ADE20K's release folder)."""
import json
import re
from pathlib import Path

import pytest
from conftest import make_photo_folder
from test_evaluate import tiny_generator  # noqa: F401 - the fixture

from gan_colorizer.data import benchmarks
from gan_colorizer.errors import UserError
from gan_colorizer.evaluate.cli import main

LISTS = Path(benchmarks.__file__).parent / "lists"
EXPECTED = {  # name: (count, pattern of every name), as the papers' sets are known
    "imagenet-ctest10k": (10_000, r"n\d{8}/ILSVRC2012_val_\d{8}\.JPEG"),
    "imagenet-val5k": (5_000, r"ILSVRC2012_val_\d{8}\.JPEG"),
    "coco-stuff-val5k": (5_000, r"\d{12}\.jpg"),
    "ade20k-val2k": (2_000, r"ADE_val_\d{8}\.jpg"),
}


def test_every_benchmark_is_known_with_its_source():
    assert set(benchmarks.BENCHMARKS) == set(EXPECTED)
    for b in benchmarks.BENCHMARKS.values():
        assert b.source and b.protocol in ("center-crop", "resize", None) and benchmarks.check_names(b) == []


@pytest.mark.parametrize("name, file", [("imagenet-ctest10k", "imagenet_ctest10k.txt"),
                                        ("coco-stuff-val5k", "coco_stuff_val5k.txt")])
def test_each_committed_list_has_its_count_no_duplicate_and_the_pattern(name, file):
    text = (LISTS / file).read_text()
    assert text.startswith("# ") and "Source: " in text.split("\n\n")[0]  # the source, in the file itself
    names = [line for line in text.splitlines() if line and not line.startswith("#")]
    count, pattern = EXPECTED[name]
    assert len(names) == len(set(names)) == count
    assert all(re.fullmatch(pattern, n) for n in names)
    assert benchmarks.BENCHMARKS[name].names() == names


def test_ctest10k_holds_one_synset_folder_per_name_and_coco_stuff_the_first_val2017_ids():
    ctest = benchmarks.BENCHMARKS["imagenet-ctest10k"].names()
    assert len({n.split("/")[0] for n in ctest}) == 1000  # ImageNet's classes, 10 photos each
    assert benchmarks.BENCHMARKS["coco-stuff-val5k"].names()[:3] == ["000000000139.jpg", "000000000285.jpg",
                                                                      "000000000632.jpg"]


def test_rule_made_splits_are_the_first_files_of_the_release():
    val5k = benchmarks.BENCHMARKS["imagenet-val5k"].names()
    assert (val5k[0], val5k[-1], len(set(val5k))) == ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00005000.JPEG",
                                                      5000)
    assert val5k == sorted(val5k)
    ade = benchmarks.BENCHMARKS["ade20k-val2k"].names()
    assert (ade[0], ade[-1], len(set(ade))) == ("ADE_val_00000001.jpg", "ADE_val_00002000.jpg", 2000)


def imagenet_val(root: Path, names: list[str], real: int = 0) -> Path:
    """ImageNet val in synset folders (as most copies keep it): empty placeholders, the first `real` photos real."""
    for i, name in enumerate(names):
        path = root / f"n{i % 7:08d}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    if real:
        make_photo_folder(root / "real", real)
        for src, name in zip(sorted((root / "real").iterdir()), names):
            next(root.glob(f"n*/{name}")).write_bytes(src.read_bytes())
            src.unlink()
        (root / "real").rmdir()
    return root


def test_files_are_found_by_name_in_any_folder_and_a_missing_one_is_one_line(tmp_path):
    bench = benchmarks.BENCHMARKS["imagenet-val5k"]
    names = bench.names()
    root = imagenet_val(tmp_path / "val", names[:4000] + names[4003:])
    with pytest.raises(UserError) as err:
        benchmarks.match_files(bench, root)
    assert str(err.value) == (f"--data {root}: 3 of the 5000 files of imagenet-val5k are missing, first "
                              f"ILSVRC2012_val_00004001.JPEG (looked for them by name, recursively)")
    imagenet_val(root, names[4000:4003])
    paths, rel = benchmarks.match_files(bench, root)
    assert [p.name for p in paths] == names and all(Path(r).parts[0].startswith("n") for r in rel)


def test_evaluate_on_a_benchmark_names_it_beside_the_papers_figures(tmp_path, tiny_generator, capsys):  # noqa: F811
    data = tmp_path / "ADEChallengeData2016" / "images" / "validation"
    names = benchmarks.BENCHMARKS["ade20k-val2k"].names()
    data.mkdir(parents=True)
    for name in names[3:]:
        (data / name).write_bytes(b"")  # past --limit: found by name, never decoded
    make_photo_folder(tmp_path / "real", 3)
    for src, name in zip(sorted((tmp_path / "real").iterdir()), names):
        (data / name).write_bytes(src.read_bytes())
    (tmp_path / "x.pt").write_bytes(b"")
    assert main(["--checkpoint", str(tmp_path / "x.pt"), "--benchmark", "ade20k-val2k", "--data", str(data),
                 "--out", str(tmp_path / "out"), "--image-size", "32", "--num-workers", "0", "--limit", "3",
                 "--protocol", "resize", "--report"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["benchmark"]["name"] == "ade20k-val2k" and summary["n_images"] == 3
    assert summary["benchmark"]["published"]["note"] == "figures the papers print, not measured here"
    rows = (tmp_path / "out" / "metrics.csv").read_text()
    assert all(name in rows for name in names[:3]) and names[3] not in rows
    assert "published figures for ade20k-val2k" in capsys.readouterr().out
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "3 images of the ade20k-val2k split (ADE20K val" in page and "published figures, theirs" in page


def test_evaluate_on_a_folder_missing_benchmark_files_is_one_line(tmp_path, tiny_generator, capsys):  # noqa: F811
    make_photo_folder(tmp_path / "photos", 2)
    (tmp_path / "x.pt").write_bytes(b"")
    assert main(["--checkpoint", str(tmp_path / "x.pt"), "--benchmark", "coco-stuff-val5k", "--data",
                 str(tmp_path / "photos"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --data {tmp_path / 'photos'}: 5000 of the 5000 files of coco-stuff-val5k are missing, "
                   f"first 000000000139.jpg (looked for them by name, recursively)")
