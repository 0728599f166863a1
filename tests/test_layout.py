"""The package's shape: imports point one way (core <- models <- colorize <- inspect <- report <- evaluate; models and
inspect <- train), no import cycle, every sub-package says what it holds, no module grows past one concept's size."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gan_colorizer"
# each sub-package may import the core and the sub-packages listed for it, nothing else
MAY_IMPORT = {
    "models": set(),  # the networks, ours and the published ones: just above the core
    "colorize": {"models"},
    "inspect": {"models", "colorize"},
    "report": {"colorize", "inspect"},
    "evaluate": {"models", "colorize", "inspect", "report"},
    "train": {"models", "inspect"},
    "app": {"models", "colorize"},  # the web app: a page over the Colorizer API
}
# sub-packages that are folders of the core, not a layer of their own: the data path (files, scans, shards) is what
# core modules such as split.py and ab_prior.py build on, and it imports only the core
CORE_FOLDERS = {"data"}
MAX_LINES = 330


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every gan_colorizer module a file imports, at the top or inside a function (a lazy import is still a
    dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the package uses absolute imports")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gan_colorizer"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from gan_colorizer import checkpoint`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gan_colorizer"))
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(p) if m in files and m != name} for name, p in files.items()}


def group(module: str) -> str:
    """'core' for gan_colorizer.X, else the sub-package's name."""
    parts = module.split(".")
    sub = len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT.keys() | CORE_FOLDERS)
    return parts[1] if sub and parts[1] not in CORE_FOLDERS else "core"


def test_core_modules_import_no_sub_package_and_sub_packages_only_downward():
    wrong = []
    for module, deps in graph().items():
        if module == "gan_colorizer":  # the package's face: `from gan_colorizer import Colorizer`
            continue
        allowed = {"core", group(module)} | MAY_IMPORT.get(group(module), set())
        wrong += [f"{module} -> {d}" for d in sorted(deps) if group(d) not in allowed]
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


def test_no_import_cycle():
    deps, state, cycles = graph(), {}, []

    def visit(node, path):
        state[node] = "open"
        for d in sorted(deps[node]):
            if state.get(d) == "open":
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[node] = "done"

    for node in sorted(deps):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The two tests above can fail: a fake package with both faults makes them."""
    fake = tmp_path / "gan_colorizer"
    (fake / "train").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "train" / "__init__.py").write_text('"""x\ny"""\n')
    (fake / "color.py").write_text("from gan_colorizer.train import loop\n")
    (fake / "train" / "loop.py").write_text("from gan_colorizer.color import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match="gan_colorizer.color -> gan_colorizer.train.loop"):
        test_core_modules_import_no_sub_package_and_sub_packages_only_downward()
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle()


@pytest.mark.parametrize("sub", sorted(MAY_IMPORT.keys() | CORE_FOLDERS))
def test_each_sub_package_says_in_two_lines_what_lives_there(sub):
    doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text()))
    assert doc and len(doc.splitlines()) <= 2


def test_no_module_is_longer_than_one_concept_needs():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
