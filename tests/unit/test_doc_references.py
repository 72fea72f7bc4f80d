"""Docstrings and comments point only to documents that are in the repository (docs/, README.md)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("cogplane", "functions", "gpu_runner", "infra", "simaws", "bench", "tests", "scripts")
# A path-like name ending in .md, e.g. `docs/replicate-api.md` or `README.md`.
REFERENCE = re.compile(r"(?<![\w./-])([\w./-]+\.md)\b")


def references() -> list[tuple[Path, str]]:
    found = []
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix not in (".py", ".sh", ".html", ".js") or "__pycache__" in path.parts:
                continue
            found += [(path, name) for name in REFERENCE.findall(path.read_text(errors="replace"))]
    return found


def test_every_document_named_in_the_code_is_in_the_repo() -> None:
    names = references()
    assert any(name == "docs/replicate-api.md" for _, name in names)  # the scan sees the references
    # README.md names a model's own README (platform models), next to the file; others are repo paths
    missing = [
        f"{path.relative_to(REPO)}: {name}"
        for path, name in names
        if not (REPO / name).exists() and not (name == "README.md" and "platform_models" in path.parts)
    ]
    assert not missing, "documents named but not in the repository:\n" + "\n".join(missing)


def test_the_design_notes_the_code_relies_on_are_in_docs() -> None:
    for name in ("docs/DESIGN.md", "docs/replicate-api.md", "docs/cog-contract.md", "docs/moto-notes.md"):
        assert (REPO / name).stat().st_size > 1000, name
