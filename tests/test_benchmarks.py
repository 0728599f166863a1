"""The benchmark splits: each list's count, uniqueness and name pattern read straight from the committed files, the
rule-made ones against the rule's ends, a folder missing files in one line, and evaluate.py --benchmark on a tiny
folder laid out like the real one (ImageNet val in synset folders; ADE20K's release folder)."""
import json
import re
from html import escape
from pathlib import Path

import pytest
from conftest import make_photo_folder
from test_evaluate import tiny_generator  # noqa: F401 - the fixture

from gan_colorizer.data import benchmarks
from gan_colorizer.errors import UserError
from gan_colorizer.evaluate.cli import main
from gan_colorizer.evaluate.options import PROTOCOLS
from gan_colorizer.evaluate.theirs import beside_ours_lines

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


def test_every_published_figure_carries_its_table_and_where_it_was_read_or_the_split_says_what_was_searched():
    for name in benchmarks.BENCHMARKS:
        published = benchmarks.published(name)
        if published["source"] is None:
            assert name == "imagenet-ctest10k" and "searched" in published and "ctest10k" in published["searched"]
            continue
        source = published["source"]
        assert re.search(r"Table \d", source["cite"]) and source["read"].startswith("2026-") and source["left_out"]
        assert source["protocol"]["name"] in PROTOCOLS and source["protocol"]["image_size"] == 256
        assert set(source["metric_notes"]) == set(benchmarks.COMPARED)
        assert published["figures"] and all(set(f) <= set(benchmarks.COMPARED) and f for f in published["figures"].values())
        assert all(isinstance(v, float) and 0 < v < 100 for f in published["figures"].values() for v in f.values())
    val5k = benchmarks.published("imagenet-val5k")["figures"]  # as read in DDColor's Table 1, ImageNet (val5k)
    assert val5k["DDColor-large"] == {"fid": 3.92, "colorfulness": 38.26, "delta_colorfulness": 0.05, "psnr": 23.85}
    assert val5k["DeOldify"]["fid"] == 6.59 and val5k["ColorFormer"]["psnr"] == 23.10 and val5k["CIC"]["fid"] == 8.72


def test_the_protocol_line_names_each_difference_from_the_papers_and_always_the_fid_network():
    bench = benchmarks.BENCHMARKS["imagenet-val5k"]
    differs = benchmarks.protocol_note(bench, "center-crop", 224, 4990)
    assert differs.startswith("protocol differs from that of the published figures (DDColor, Kang et al., ICCV 2023")
    assert ("photo rule ours center-crop, theirs resize; size ours 224 px, theirs 256 px; photos scored ours 4990, "
            "theirs 5000; FID: theirs torchvision's Inception v3, ours pytorch-fid's TF Inception") in differs
    same = benchmarks.protocol_note(bench, "resize", 256, 5000)
    assert same.startswith("protocol as that of the published figures") and "resize, 256 px, all 5000 photos" in same
    assert "differs" not in same and "FID: theirs torchvision's Inception v3" in same
    assert benchmarks.protocol_note(benchmarks.BENCHMARKS["imagenet-ctest10k"], "resize", 256, 10_000) is None


def test_a_split_without_a_figure_read_says_so_and_what_was_searched():
    summary = {"benchmark": benchmarks.BENCHMARKS["imagenet-ctest10k"].summary("center-crop", 256, 10_000),
               "models": {"gray": {"psnr": 20.0}}}
    lines = beside_ours_lines(summary)
    assert len(lines) == 1 and lines[0].startswith("published figures for imagenet-ctest10k: no published figure read (")
    assert summary["benchmark"]["published"]["figures"] == {}


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
    published = summary["benchmark"]["published"]
    assert published["note"].startswith("published (theirs): ") and published["column"] == "ADE20K*"
    assert published["figures"]["DDColor-large"] == {"fid": 8.21, "colorfulness": 34.80, "delta_colorfulness": 0.24,
                                                     "psnr": 24.13}
    assert published["protocol_note"].startswith("protocol differs from that of the published figures (DDColor")
    assert "size ours 32 px, theirs 256 px; photos scored ours 3, theirs 2000; FID: theirs" in published["protocol_note"]
    assert "photo rule" not in published["protocol_note"]  # resize, as theirs
    rows = (tmp_path / "out" / "metrics.csv").read_text()
    assert all(name in rows for name in names[:3]) and names[3] not in rows
    out = capsys.readouterr().out
    table = out[out.index("published figures for ade20k-val2k beside ours"):].splitlines()
    assert table[1].split() == ["label", "whose", "psnr", "colorfulness", "delta_colorfulness", "fid"]
    assert table[2].startswith("gray") and "ours (measured here)" in table[2]
    assert table[-2].split()[:4] == ["DDColor-large", "published", "(theirs)", "24.13"]
    assert table[-1] == published["protocol_note"]
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "3 images of the ade20k-val2k split (ADE20K val" in page and 'id="published-table"' in page
    assert "DDColor-large \u2013 published (theirs)" in page and escape(published["protocol_note"]) in page


def test_evaluate_on_a_folder_missing_benchmark_files_is_one_line(tmp_path, tiny_generator, capsys):  # noqa: F811
    make_photo_folder(tmp_path / "photos", 2)
    (tmp_path / "x.pt").write_bytes(b"")
    assert main(["--checkpoint", str(tmp_path / "x.pt"), "--benchmark", "coco-stuff-val5k", "--data",
                 str(tmp_path / "photos"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --data {tmp_path / 'photos'}: 5000 of the 5000 files of coco-stuff-val5k are missing, "
                   f"first 000000000139.jpg (looked for them by name, recursively)")
