"""A Cog model's OpenAPI schema: produce it (via `schemagen.py` in the model's Python) and read it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCHEMAGEN = Path(__file__).with_name("schemagen.py")
_REF_PREFIX = "#/components/schemas/"


class SchemaError(Exception):
    """No schema could be produced; the message says why in one line."""


def generate_schema(model_dir: str | Path, python: str = sys.executable, timeout: float = 120) -> dict:
    """Run schemagen.py with `python` (the model's interpreter) in `model_dir`; return the OpenAPI dict."""
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise SchemaError(f"model directory not found: {model_dir}")
    try:
        proc = subprocess.run(  # noqa: S603 - argv list (no shell): the model's interpreter runs our schemagen.py
            [python, str(SCHEMAGEN), str(model_dir)],
            cwd=model_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SchemaError(f"schema generation timed out after {timeout:g}s (importing the model hangs?)") from None
    except OSError as e:
        raise SchemaError(f"could not run {python}: {e.strerror or e}") from None
    if proc.returncode != 0:
        raise SchemaError(_last_line(proc.stderr) or f"schema generation failed with exit code {proc.returncode}")
    try:
        schema = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise SchemaError(f"schema generator wrote invalid JSON: {e}") from None
    if not isinstance(schema, dict) or "components" not in schema:
        raise SchemaError("schema generator wrote no OpenAPI document")
    return schema


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _schemas(schema: dict) -> dict:
    return (schema.get("components") or {}).get("schemas") or {}


def input_schema(schema: dict) -> dict:
    return _schemas(schema).get("Input") or {}


def output_schema(schema: dict) -> dict:
    return _schemas(schema).get("Output") or {}


def is_iterator_output(schema: dict) -> bool:
    """The model yields its output piece by piece (Iterator or ConcatenateIterator)."""
    out = output_schema(schema)
    return out.get("type") == "array" and out.get("x-cog-array-type") == "iterator"


def is_file_output(schema: dict) -> bool:
    """The model outputs a file, or a list or iterator of files (`format: uri`)."""
    out = output_schema(schema)
    items = out.get("items")
    return out.get("format") == "uri" or (isinstance(items, dict) and items.get("format") == "uri")


def is_concatenate_output(schema: dict) -> bool:
    """The pieces are text to be joined (ConcatenateIterator[str]), e.g. LLM tokens."""
    return is_iterator_output(schema) and output_schema(schema).get("x-cog-array-display") == "concatenate"


def supports_streaming(schema: dict) -> bool:
    """The predict route is marked `x-cog-streaming` (needed for SSE from the cog server)."""
    post = ((schema.get("paths") or {}).get("/predictions") or {}).get("post") or {}
    return post.get("x-cog-streaming") is True


def resolve_ref(schema: dict, ref: str) -> dict:
    if not ref.startswith(_REF_PREFIX):
        return {}
    return _schemas(schema).get(ref[len(_REF_PREFIX) :]) or {}


def resolve_prop(schema: dict, prop: dict) -> dict:
    """The property with any `allOf: [{$ref}]` / `$ref` (cog's choices enum) merged in.

    The property's own keys win, so `default`, `description` and `x-order` stay as written.
    """
    merged: dict[str, Any] = {}
    refs = [prop["$ref"]] if isinstance(prop.get("$ref"), str) else []
    for part in prop.get("allOf") or []:
        if isinstance(part, dict):
            if isinstance(part.get("$ref"), str):
                refs.append(part["$ref"])
            else:
                merged.update(part)
    for ref in refs:
        target = resolve_ref(schema, ref)
        merged.update({k: v for k, v in target.items() if k not in ("title", "description")})
    merged.update({k: v for k, v in prop.items() if k not in ("allOf", "$ref")})
    return merged


def input_properties_ordered(schema: dict) -> list[tuple[str, dict]]:
    """Input properties in the model's parameter order (`x-order`), as forms should show them."""
    props = input_schema(schema).get("properties") or {}
    return sorted(props.items(), key=lambda kv: (kv[1].get("x-order", len(props)), kv[0]))


def _is_file_prop(prop: dict) -> bool:
    if prop.get("format") == "uri":
        return True
    items = prop.get("items")
    return prop.get("type") == "array" and isinstance(items, dict) and items.get("format") == "uri"


def file_inputs(schema: dict) -> dict[str, bool]:
    """Inputs that take files (cog.Path / cog.File, or lists of them), in x-order -> is it a list."""
    found = {}
    for name, prop in input_properties_ordered(schema):
        resolved = resolve_prop(schema, prop)
        if _is_file_prop(resolved):
            found[name] = resolved.get("type") == "array"
    return found


def file_input_names(schema: dict) -> list[str]:
    """Inputs that take files (cog.Path / cog.File, or lists of them), in x-order."""
    return list(file_inputs(schema))


# --- training interfaces (cog.yaml `train:`) --------------------------------------------------

_TRAINING_COMPONENTS = ("TrainingInput", "TrainingOutput", "TrainingRequest", "TrainingResponse")


def has_training(schema: dict) -> bool:
    """The version has a training interface (cog's `TrainingInput` component)."""
    return isinstance(_schemas(schema).get("TrainingInput"), dict)


def training_view(schema: dict) -> dict:
    """The schema as a training sees it: TrainingInput/TrainingOutput in the places of
    Input/Output, so input validation, file inputs and forms work unchanged for trainings."""
    schemas = dict(_schemas(schema))
    schemas["Input"] = schemas.get("TrainingInput") or {}
    schemas["Output"] = schemas.get("TrainingOutput") or {}
    return {**schema, "components": {**(schema.get("components") or {}), "schemas": schemas}}


def without_training(schema: dict) -> dict:
    """The schema minus its training interface (what a trained version inherits: it runs)."""
    schemas = {k: v for k, v in _schemas(schema).items() if k not in _TRAINING_COMPONENTS}
    paths = {k: v for k, v in (schema.get("paths") or {}).items() if not k.startswith("/trainings")}
    return {**schema, "paths": paths, "components": {**(schema.get("components") or {}), "schemas": schemas}}
