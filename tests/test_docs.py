"""The docs stay true to the code: every flag --help prints is documented, the generated tables are what
docs/generate.py writes now, the README stays short, and every relative link leads to a file (and heading)."""
import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 220

FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def load_generate():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generate()


def help_of(tool: str, monkeypatch) -> str:
    """What `TOOL --help` prints, from its console entry point, in this process (unwrapped: argparse breaks lines
    at hyphens, which would cut a flag in two)."""
    monkeypatch.setenv("COLUMNS", "10000")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        generate.load(generate.TOOLS[tool].main)(["--help"])
    assert exit_info.value.code in (0, None)
    return out.getvalue()


def missing_flags(help_text: str, docs_text: str) -> list[str]:
    """Flags in help_text that docs_text never names."""
    documented = set(FLAG.findall(docs_text))
    return sorted({f for f in FLAG.findall(help_text) if f != "--help"} - documented)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, re.M)}


def broken_links(page: Path) -> list[str]:
    """Relative links of a markdown page whose file (or heading) does not exist."""
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    return broken


@pytest.fixture(scope="module")
def docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


@pytest.fixture(scope="module")
def generated():
    return generate.all_regions()


@pytest.mark.parametrize("tool", sorted(generate.TOOLS))
def test_every_flag_that_help_prints_is_in_the_docs(tool, docs_text, monkeypatch):
    help_text = help_of(tool, monkeypatch)
    assert FLAG.search(help_text), f"{tool} --help printed no flags:\n{help_text}"
    assert missing_flags(help_text, docs_text) == [], f"{tool}: flags of --help missing from docs/: run `make docs`"


def test_the_flag_check_fails_when_the_docs_lack_a_flag():
    help_text = "usage: colorize.py [--checkpoint CKPT] [--brand-new-flag N]\n  --checkpoint CKPT  a checkpoint"
    assert missing_flags(help_text, "| `--checkpoint` | required |") == ["--brand-new-flag"]
    assert missing_flags(help_text, "`--checkpoint`, `--brand-new-flag`") == []
    assert missing_flags(help_text, "`--brand-new-flag-2`") == ["--brand-new-flag", "--checkpoint"]


def test_every_tool_has_a_parser_and_a_generated_table_in_the_docs(generated, docs_text):
    regions, missing = generated
    assert missing == [], f"no build_parser() for {missing}: fix docs/generate.py's TOOLS"
    pages = {name for page in DOCS.glob("*.md") for name in generate.region_bodies(page.read_text())}
    assert {f"flags:{tool}" for tool in generate.TOOLS} <= pages


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_generated_regions_are_what_generate_py_writes_now(page, generated):
    regions, _ = generated
    text = page.read_text()
    assert generate.rewrite(text, regions) == text, f"{page.name} is stale: run `make docs`"


def test_a_stale_region_is_told_apart_and_rewritten():
    text = "intro\n<!-- flags:x -->\n| old | table |\n<!-- /flags:x -->\noutro\n<!-- other -->\nkept\n<!-- /other -->\n"
    new = generate.rewrite(text, {"flags:x": "| new | table |\n"})
    assert new == text.replace("| old | table |", "| new | table |")
    assert generate.rewrite(new, {"flags:x": "| new | table |"}) == new
    assert generate.region_bodies(new) == {"flags:x": "| new | table |\n", "other": "kept\n"}


def test_a_flag_table_has_a_row_per_flag_with_its_default_and_choices():
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256, help="crop size (default: 256)")
    parser.add_argument("--mode", choices=("a", "b"), default="a", help="which | one")
    group = parser.add_argument_group("output")
    group.add_argument("--out", required=True, help="folder")
    table = generate.flag_table(parser)
    assert "| `--size` | 256 |  | crop size |" in table
    assert "| `--mode` | a | `a`, `b` | which \\| one |" in table
    assert "*output*" in table and "| `--out` | required |  | folder |" in table
    assert "--help" not in table


def test_the_readme_stays_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_at_an_existing_file(page):
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md) [ok](there.md#a-heading) [web](https://example.org/x) [gone](missing.md) "
                    "[no heading](there.md#nope)\n```\n[in code](ignored.md)\n```\n")
    assert broken_links(page) == ["missing.md", "there.md#nope"]


def test_generate_documents_the_tree_it_stands_in_not_an_installed_copy(tmp_path):
    """A gan_colorizer found first on PYTHONPATH (another checkout, an installed copy) is not the one documented."""
    fake = tmp_path / "gan_colorizer"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('the wrong tree was documented')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, str(DOCS / "generate.py"), "--check"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
