"""Check a prediction's input against the version's OpenAPI schema, the way cog's server does.

cog's server (coglet) validates the request with the bundled JSON schema and answers 422; we do the
same at the gateway so a bad input never costs a model boot. Two deliberate differences:

* an `integer` field rejects 2.5 and turns 2.0 into 2 (cog lets 2.0 through and the model then
  crashes on a float);
* for list inputs, `minimum`/`maximum`/length/`pattern`/choices are checked on every item, which is
  what cog's Python side enforces after the JSON-schema pass.

Unknown fields are dropped silently, like cog. Defaults are not filled in: the model does that.
A schema without an `Input` component validates nothing, as cog does when its schema file is missing.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cogplane.domain.errors import InputValidationError

_REF_PREFIX = "#/components/schemas/"
_JSON_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def validate_input(schema: dict, input: dict | None) -> dict:
    """The input to store (known fields only, integral floats as ints); raises InputValidationError."""
    if input is None:
        input = {}
    if not isinstance(input, dict):
        raise InputValidationError(
            [{"field": None, "msg": f"input must be an object, not {_json_type(input)}", "type": "type"}]
        )

    components = _components(schema)
    if "Input" not in components:
        return dict(input)  # no schema: cog then accepts anything, and so do we
    input_schema = components["Input"] or {}
    properties: dict = input_schema.get("properties") or {}
    required = set(input_schema.get("required") or [])
    errors: list[dict] = []
    cleaned: dict[str, Any] = {}

    ordered = sorted(properties.items(), key=lambda kv: (kv[1].get("x-order", len(properties)), kv[0]))
    for name, raw_prop in ordered:
        if name not in input:
            if name in required:
                errors.append({"field": name, "msg": "Field required", "type": "required"})
            continue
        prop = _resolve(schema, raw_prop)
        value, problems = _check_value(schema, prop, input[name])
        errors.extend({"field": name, "msg": msg, "type": rule} for rule, msg in problems)
        if not problems:
            cleaned[name] = value

    if errors:
        raise InputValidationError(errors)
    return cleaned


# --------------------------------------------------------------------------------------------


def _components(schema: dict) -> dict:
    return ((schema or {}).get("components") or {}).get("schemas") or {}


def _resolve(schema: dict, prop: dict) -> dict:
    """Merge `$ref` / `allOf: [{$ref}]` targets (cog's choices enums) into the property."""
    if not isinstance(prop, dict):
        return {}
    merged: dict[str, Any] = {}
    parts = [prop] if "$ref" in prop else []
    parts += [p for p in prop.get("allOf") or [] if isinstance(p, dict)]
    for part in parts:
        ref = part.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            target = _components(schema).get(ref[len(_REF_PREFIX) :]) or {}
            merged.update(_resolve(schema, target))
        elif part is not prop:
            merged.update(_resolve(schema, part))
    merged.update({k: v for k, v in prop.items() if k not in ("allOf", "$ref")})
    return merged


def _check_value(schema: dict, prop: dict, value: Any) -> tuple[Any, list[tuple[str, str]]]:
    """(normalised value, [(rule, message)]) for one input value against its resolved property."""
    if value is None:
        if _nullable(prop):
            return None, []
        return None, [("type", f"null is not of type {_type_label(prop)}")]

    if "anyOf" in prop and "type" not in prop:
        for variant in prop["anyOf"]:
            variant = _resolve(schema, variant)
            if variant.get("type") == "null":
                continue
            normalised, problems = _check_value(schema, variant, value)
            if not problems:
                return normalised, []
        return value, [("type", f"{_show(value)} is not valid under any of the given schemas")]

    expected = prop.get("type")
    if expected == "array":
        if not isinstance(value, list):
            return value, [("type", f'{_show(value)} is not of type "array"')]
        items = _resolve(schema, prop.get("items") or {})
        # Constraints cog puts on a list property apply to each item (cog's Python check does this).
        item_prop = {**items, **{k: v for k, v in prop.items() if k in _ITEM_CONSTRAINTS and k not in items}}
        out, problems = [], []
        for i, item in enumerate(value):
            normalised, item_problems = _check_value(schema, item_prop, item)
            out.append(normalised)
            problems += [(rule, f"item {i}: {msg}") for rule, msg in item_problems]
        return out, problems

    value, problem = _check_type(expected, value)
    if problem:
        return value, [("type", problem)]
    return value, _check_constraints(prop, value)


_ITEM_CONSTRAINTS = ("minimum", "maximum", "minLength", "maxLength", "pattern", "enum")


def _check_type(expected: Any, value: Any) -> tuple[Any, str | None]:
    wrong = f'{_show(value)} is not of type "{expected}"'
    if expected == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, wrong
        if isinstance(value, float):
            if not value.is_integer():
                return value, wrong
            return int(value), None
        return value, None
    if expected == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, wrong
        if isinstance(value, float) and not math.isfinite(value):
            return value, f"{_show(value)} is not a finite number"
        return value, None
    if expected == "boolean":
        return value, None if isinstance(value, bool) else wrong
    if expected == "string":
        return value, None if isinstance(value, str) else wrong
    if expected == "object":
        return value, None if isinstance(value, dict) else wrong
    return value, None  # no type (e.g. an Any input): anything goes


def _check_constraints(prop: dict, value: Any) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    enum = prop.get("enum")
    if isinstance(enum, list) and not any(_same_json(value, choice) for choice in enum):
        problems.append(("enum", f"{_show(value)} is not one of {_show(enum)}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        minimum, maximum = prop.get("minimum"), prop.get("maximum")
        if isinstance(minimum, int | float) and value < minimum:
            problems.append(("minimum", f"{_show(value)} is less than the minimum of {_num(minimum)}"))
        if isinstance(maximum, int | float) and value > maximum:
            problems.append(("maximum", f"{_show(value)} is greater than the maximum of {_num(maximum)}"))
    if isinstance(value, str):
        min_len, max_len = prop.get("minLength"), prop.get("maxLength")
        if isinstance(min_len, int) and len(value) < min_len:
            problems.append(("minLength", f"{_show(value)} is shorter than {min_len} {_chars(min_len)}"))
        if isinstance(max_len, int) and len(value) > max_len:
            problems.append(("maxLength", f"{_short(value)} is longer than {max_len} {_chars(max_len)}"))
        pattern = prop.get("pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except re.error:
                matched = True  # a pattern Python cannot compile is the schema's problem, not the caller's
            if not matched:
                problems.append(("pattern", f"{_short(value)} does not match {_show(pattern)}"))
    return problems


def _nullable(prop: dict) -> bool:
    if prop.get("nullable") is True or prop.get("type") == "null":
        return True
    return any(isinstance(v, dict) and v.get("type") == "null" for v in prop.get("anyOf") or [])


def _type_label(prop: dict) -> str:
    if "type" in prop:
        return f'"{prop["type"]}"'
    types = [v.get("type") for v in prop.get("anyOf") or [] if isinstance(v, dict) and v.get("type")]
    return " or ".join(f'"{t}"' for t in types) or "any allowed type"


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1 and "1" != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _num(n: float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


def _chars(n: int) -> str:
    return "character" if n == 1 else "characters"


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(value)


def _short(value: str, limit: int = 80) -> str:
    """Long texts are echoed cut, so one error never carries a whole document."""
    return _show(value if len(value) <= limit else value[:limit] + "…")
