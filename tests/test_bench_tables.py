"""docs/benchmarks.md's tables are bench/tables.py's rendering of the committed bench/results/*.json: a table that
disagrees with its JSON (a hand edit, a rerun whose page was not regenerated) fails here."""
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_tables():
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "bench" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = load_tables()
generate = tables.docs_generate()
PAGE = tables.PAGE.read_text()


def test_every_results_file_has_its_region_on_the_page_and_every_region_its_results_file():
    on_page = {name for name in generate.region_bodies(PAGE) if name.startswith("bench:")}
    assert on_page == set(tables.render_all())
    assert on_page, "no bench/results/*.json committed"


def test_every_table_on_the_page_is_what_its_json_renders_to():
    stale = [name for name, body in tables.render_all().items()
             if generate.rewrite(PAGE, {name: body}) != PAGE]
    assert not stale, f"regenerate with `.venv/bin/python bench/tables.py`: {stale}"


def test_each_table_says_the_machine_and_date_of_its_json():
    for path in sorted(tables.RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        body = generate.region_bodies(PAGE)[f"bench:{path.stem}"]
        for fact in (path.name, data["machine"]["cpu"], data["run"]["date"], data["run"]["git_commit"][:10]):
            assert fact in body, f"{path.name}: {fact!r} is not beside its table"


@pytest.mark.parametrize("name", ["train_speed-cpu", "checkpoint_write-cpu"])
def test_a_changed_number_in_a_copy_of_the_json_is_caught(tmp_path, name):
    for path in tables.RESULTS.glob("*.json"):
        shutil.copy(path, tmp_path)
    data = json.loads((tmp_path / f"{name}.json").read_text())
    row = data["rows"][-1]
    key = next(k for k, v in row.items() if isinstance(v, float) and not isinstance(v, bool))
    row[key] = row[key] * 1.5 + 1
    (tmp_path / f"{name}.json").write_text(json.dumps(data))
    rendered = tables.render_all(tmp_path)
    assert generate.rewrite(PAGE, {f"bench:{name}": rendered[f"bench:{name}"]}) != PAGE
    untouched = {k: v for k, v in rendered.items() if k != f"bench:{name}"}
    assert generate.rewrite(PAGE, untouched) == PAGE


def test_fmt_keeps_the_precision_a_reader_needs():
    assert [tables.fmt(v) for v in (1780.4, 2.456, 0.01234, 0.15, 0.0, [2.45, 2.17], True, None)] == \
        ["1780", "2.46", "0.0123", "0.150", "0.00", "2.45 / 2.17", "yes", ""]
