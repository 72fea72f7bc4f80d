"""The core sits on the ground floor: nothing under cogplane/ imports the packages built on it
(functions/ the Lambda handlers and API app, gpu_runner/ the runner, infra/ the CDK app, local/ the
single-machine stack and CLI). Read from the source (ast), so lazy imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "cogplane"
ABOVE = ("functions", "gpu_runner", "infra", "local")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement, nested ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports(root: Path) -> list[str]:
    offending = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in imported_modules(tree):
            if module.split(".")[0] in ABOVE:
                offending.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return offending


def test_the_walk_sees_every_kind_of_import():
    tree = ast.parse(
        "import functions.api\n"
        "from gpu_runner.runner import RunnerConfig\n"
        "def f():\n"
        "    from infra import stack\n"
        "    import local.cli as cli\n"
        "from . import sibling\n"
        "import functionsx\n"
    )
    names = [module for _, module in imported_modules(tree)]
    assert [n for n in names if n.split(".")[0] in ABOVE] == [
        "functions.api",
        "gpu_runner.runner",
        "infra",
        "local.cli",
    ]


def test_the_core_imports_nothing_built_on_it():
    files = list(CORE.rglob("*.py"))
    assert len(files) > 50  # the walk really reads the package
    assert upward_imports(CORE) == []
