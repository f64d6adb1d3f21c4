"""The layer rules of docs/ARCHITECTURE.md, enforced: import-linter contracts (pyproject.toml), no import cycle,
no function-level import of our own modules, readable module sizes, and asserts that say which part failed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

from .python_source import parse_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "embed_ft"
MAX_MODULE_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_import_linter_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_no_import_cycle_between_modules():
    """Every import counts here, function-level ones included: a cycle hidden inside a function is still one."""
    graph = grimp.build_graph("embed_ft", exclude_type_checking_imports=True, cache_dir=None)
    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    # Tarjan's strongly connected components, iteratively.
    counter, stack, on_stack, low, number, cycles = [0], [], set(), {}, {}, []

    def strongconnect(root: str) -> None:
        work = [(root, iter(edges[root]))]
        number[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    continue
                if child not in number:
                    number[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], number[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == number[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))

    for module in modules:
        if module not in number:
            strongconnect(module)
    assert cycles == [], f"import cycles: {cycles}"


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    tree = parse_file(path)
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("embed_ft")):
                found.append((node.lineno, f"from {'.' * node.level}{node.module or ''} import ..."))
            elif isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name) for alias in node.names if alias.name.startswith("embed_ft"))
    return found


def test_no_function_level_import_of_our_own_modules():
    """Lazy imports are for heavy libraries (torch, sentence-transformers), never to dodge a cycle of ours."""
    offenders = {str(path.relative_to(ROOT)): found for path in _modules() if (found := _function_level_imports(path))}
    assert offenders == {}


def test_modules_stay_readable():
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_every_module_is_listed_in_the_architecture_page():
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    listed_by_folder = {"platform/services/evaluation/"}  # described as one package with its file names
    missing = []
    for path in _modules():
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and relative != "__init__.py":
            continue
        folder = relative.rsplit("/", 1)[0] + "/" if "/" in relative else ""
        if f"`{relative}`" in page or (folder in listed_by_folder and f"`{path.name}`" in page):
            continue
        missing.append(relative)
    assert missing == [], f"docs/ARCHITECTURE.md does not list: {missing}"
