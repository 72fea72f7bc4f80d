"""Source bundles: a model folder as a deterministic tar.gz (same content, same bytes, same id)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import yaml

EXCLUDED_DIRS = {".cog", "__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", "node_modules"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


class BundleError(Exception):
    pass


def read_config(model_dir: Path) -> dict:
    path = Path(model_dir) / "cog.yaml"
    if not path.is_file():
        raise BundleError(f"{model_dir} has no cog.yaml: a Cog model folder needs one.")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BundleError(f"cog.yaml is not valid YAML: {exc}") from exc
    if not isinstance(config, dict) or not (config.get("predict") or config.get("run")):
        raise BundleError('cog.yaml must name the predictor, e.g. `predict: "predict.py:Predictor"`.')
    return config


def _files(model_dir: Path) -> list[Path]:
    found = []
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir)
        if any(part in EXCLUDED_DIRS for part in rel.parts) or path.suffix in EXCLUDED_SUFFIXES:
            continue
        if path.is_file() and not path.is_symlink():
            found.append(path)
    return found


def make_bundle(model_dir: str | Path) -> bytes:
    """tar.gz of the folder: sorted entries, zeroed times and owners, fixed modes."""
    model_dir = Path(model_dir)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _files(model_dir):
            info = tarfile.TarInfo(path.relative_to(model_dir).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def unpack_bundle(bundle: bytes, target: str | Path) -> Path:
    """Unpack safely (no absolute paths, no `..`, no links) into `target`."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        tar.extractall(target, filter="data")
    return target
