"""Statuses are the domain's: outside cogplane/domain, Python code says `Status.X` (or
`BuildStatus.X`), never the bare string — a typo'd or stale string would silently never match."""

from __future__ import annotations

import ast
from pathlib import Path

from cogplane.domain.status import BuildStatus, Status

ROOT = Path(__file__).resolve().parents[2]
STATUSES = {s.value for s in Status} | {s.value for s in BuildStatus}
# data, not status logic: cog's own enum in the schema of a standalone script (it runs in the
# model's Python and cannot import cogplane), and the reason of the SSE `done` event (Replicate's
# wire vocabulary)
ALLOWED = {("cogplane/schemagen.py", "STATUS_VALUES"), ("functions/api/routers/streams.py", "reason")}


def _raw_statuses(source: str, rel: str) -> list[str]:
    tree = ast.parse(source, rel)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and (rel, t.id) in ALLOWED for t in node.targets
        ):
            allowed |= {id(n) for n in ast.walk(node.value)}
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and (rel, key.value) in ALLOWED:
                    allowed.add(id(value))
    return [
        f"{rel}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in STATUSES and id(node) not in allowed
    ]


def test_no_raw_status_strings_outside_the_domain():
    files = [
        p
        for top in ("cogplane", "functions", "gpu_runner")
        for p in sorted((ROOT / top).rglob("*.py"))
        if "domain" not in p.relative_to(ROOT).parts[:2] and "platform_models" not in p.parts
    ]
    assert len(files) > 50
    found = [hit for p in files for hit in _raw_statuses(p.read_text(), p.relative_to(ROOT).as_posix())]
    assert found == []


def test_the_check_finds_a_raw_status():
    source = 'def f(p):\n    """Is it succeeded?"""\n    return p.status == "succeeded" or {"reason": "failed"}\n'
    assert _raw_statuses(source, "cogplane/x.py") == ["cogplane/x.py:3: 'succeeded'", "cogplane/x.py:3: 'failed'"]
    assert _raw_statuses('STATUS_VALUES = ["failed"]\n', "cogplane/schemagen.py") == []
