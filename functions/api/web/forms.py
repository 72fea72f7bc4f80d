"""A model version's OpenAPI Input schema -> form controls, and a submitted form -> the input.

One `Field` per input, in `x-order`. Kinds: text, textarea, secret, integer, number, boolean,
select, file, files (a list of files), list (other lists, one item per line), json (anything else).
Every control is named after its input; a file input also has `<name>__url` for a URL and a
list of files `<name>__urls` (one per line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cogplane.domain import strictjson
from cogplane.schema import input_properties_ordered, input_schema, resolve_prop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.datastructures import FormData, UploadFile

LONG_TEXT_WORDS = ("prompt", "text", "story", "description", "content", "message", "long", "paragraph")


@dataclass
class Field:
    name: str
    label: str
    kind: str
    description: str = ""
    required: bool = False
    default: Any = None
    item_type: str | None = None  # for lists / selects: string | integer | number
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: list[Any] = field(default_factory=list)
    accept: str | None = None
    deprecated: bool = False
    nullable: bool = False

    @property
    def slider(self) -> bool:
        return self.kind in ("integer", "number") and self.minimum is not None and self.maximum is not None

    @property
    def step(self) -> str:
        if self.kind == "integer":
            return "1"
        if self.slider:
            span = (self.maximum or 0) - (self.minimum or 0)
            return "0.01" if span <= 10 else "0.1" if span <= 100 else "1"
        return "any"

    @property
    def rules(self) -> str:
        """The schema's constraints in words (shown under the control)."""
        out = []
        numeric = self.kind in ("integer", "number") or (
            self.kind == "list" and self.item_type in ("integer", "number")
        )
        lo, hi = self.show(self.minimum), self.show(self.maximum)
        if numeric and lo and hi:
            out.append(f"From {lo} to {hi}.")
        elif numeric and lo:
            out.append(f"At least {lo}.")
        elif numeric and hi:
            out.append(f"At most {hi}.")
        if self.min_length and self.max_length:
            out.append(f"{self.min_length} to {self.max_length} characters.")
        elif self.max_length:
            out.append(f"Up to {self.max_length} characters.")
        elif self.min_length:
            out.append(f"At least {self.min_length} characters.")
        if self.pattern:
            out.append(f"Must match {self.pattern}")
        if self.kind in ("list", "files"):
            out.append("One per line.")
        if self.default is not None and self.kind != "boolean":
            shown = self.default if isinstance(self.default, str) else json.dumps(self.default)
            out.append(f"Default: {shown}")
        return " ".join(out)

    def show(self, value: Any) -> str:
        """The value as the control shows it."""
        if value is None:
            return ""
        if self.kind in ("list", "files"):
            return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)
        if self.kind == "json":
            return json.dumps(value, indent=2)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))  # 1.0 -> "1" (cog writes integer bounds as floats)
        return str(value)


def _num(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _unwrap(schema: dict, prop: dict) -> tuple[dict, bool]:
    """A nullable `anyOf: [X, null]` -> (X merged with the outer keys, nullable)."""
    if "anyOf" in prop and "type" not in prop:
        variants = [resolve_prop(schema, v) for v in prop["anyOf"] if isinstance(v, dict)]
        real = [v for v in variants if v.get("type") != "null"]
        nullable = len(real) < len(variants)
        if len(real) == 1:
            merged = {**real[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
            return merged, nullable
    return prop, bool(prop.get("nullable"))


def fields_for(schema: dict) -> list[Field]:
    required = set(input_schema(schema).get("required") or [])
    out = []
    for name, raw in input_properties_ordered(schema):
        prop, nullable = _unwrap(schema, resolve_prop(schema, raw))
        ptype = prop.get("type")
        f = Field(
            name=name,
            label=name,
            kind="json",
            description=prop.get("description") or "",
            required=name in required,
            default=prop.get("default"),
            deprecated=bool(prop.get("deprecated")),
            nullable=nullable,
        )
        f.minimum, f.maximum = _num(prop.get("minimum")), _num(prop.get("maximum"))
        f.min_length = prop.get("minLength") if isinstance(prop.get("minLength"), int) else None
        f.max_length = prop.get("maxLength") if isinstance(prop.get("maxLength"), int) else None
        f.pattern = prop.get("pattern") if isinstance(prop.get("pattern"), str) else None
        f.accept = prop.get("x-cog-accept") if isinstance(prop.get("x-cog-accept"), str) else None
        if isinstance(prop.get("enum"), list):
            f.kind, f.choices, f.item_type = "select", list(prop["enum"]), ptype or "string"
        elif prop.get("format") == "uri":
            f.kind = "file"
        elif ptype == "string" and (prop.get("format") == "password" or prop.get("x-cog-secret")):
            f.kind = "secret"
        elif ptype == "string":
            f.kind = "textarea" if _long_text(name, f) else "text"
        elif ptype in ("integer", "number", "boolean"):
            f.kind = ptype
        elif ptype == "array":
            items, _ = _unwrap(schema, resolve_prop(schema, prop.get("items") or {}))
            if items.get("format") == "uri":
                f.kind = "files"
                f.accept = f.accept or items.get("x-cog-accept")
            elif items.get("type") in ("string", "integer", "number"):
                f.kind, f.item_type = "list", items["type"]
                # constraints on a list apply to each item (as the server checks them)
                f.minimum = f.minimum if f.minimum is not None else _num(items.get("minimum"))
                f.maximum = f.maximum if f.maximum is not None else _num(items.get("maximum"))
        out.append(f)
    return out


def _long_text(name: str, f: Field) -> bool:
    """A textarea for long text: a large or no maximum length, and no single-line pattern."""
    if f.pattern:
        return False
    if f.max_length is not None:
        return f.max_length > 200
    words = f"{name} {f.description}".lower()
    return any(w in words for w in LONG_TEXT_WORDS) or f.default is None


# --- a submitted form -> input ------------------------------------------------------------------


def _convert(kind: str | None, text: str) -> Any:
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            number = float(text)  # "2.0" -> 2; "2.5" stays a float for the server to refuse
            return int(number) if number.is_integer() else number
    if kind == "number":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    return text


PLAIN = {"integer": "a whole number", "number": "a number"}


async def parse_form(
    form: FormData, fields: list[Field], upload: Callable[[UploadFile, bytes], Awaitable[str]]
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(input for the model, {field: error}, values to show again). `upload(file) -> url` stores a file."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    shown: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f.name)
        if f.kind == "boolean":
            values[f.name] = shown[f.name] = raw is not None and str(raw).lower() in ("true", "on", "1", "yes")
            continue
        if f.kind == "file":
            url = await _uploaded(raw, upload)
            if url is None:
                typed = form.get(f"{f.name}__url")
                url = (typed.strip() or None) if isinstance(typed, str) else None
            if url is not None:
                values[f.name] = shown[f.name] = url
            continue
        if f.kind == "files":
            urls = [url for item in form.getlist(f.name) if (url := await _uploaded(item, upload)) is not None]
            urls += [line.strip() for line in str(form.get(f"{f.name}__urls") or "").splitlines() if line.strip()]
            shown[f.name] = urls
            if urls or f.required:
                values[f.name] = urls
            continue
        text = "" if raw is None or not isinstance(raw, str) else raw
        shown[f.name] = text
        if f.kind == "list":
            lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
            shown[f.name] = lines
            try:
                values[f.name] = [_convert(f.item_type, line) for line in lines]
            except ValueError:
                errors[f.name] = f"Put one {PLAIN.get(f.item_type or '', 'value')} on each line."
            continue
        if text == "" or (text.strip() == "" and f.kind not in ("text", "textarea", "secret")):
            continue  # left empty: the model's default applies (or the server says it is required)
        try:
            values[f.name] = _value(f, text)
        except ValueError:
            errors[f.name] = f"Enter {PLAIN.get(f.kind if f.kind != 'select' else f.item_type or '', 'a value')}."
    return values, errors, shown


async def _uploaded(item: UploadFile | str | None, upload: Callable[[UploadFile, bytes], Awaitable[str]]) -> str | None:
    """The URL of an uploaded file (None: no file chosen, or an empty one)."""
    if item is None or isinstance(item, str) or not getattr(item, "filename", None):
        return None
    content = await item.read()
    return await upload(item, content) if content else None


def _value(f: Field, text: str) -> Any:
    """A filled-in field's value for the model (ValueError: not of its kind)."""
    if f.kind in ("integer", "number"):
        return _convert(f.kind, text.strip())
    if f.kind == "select":
        match = [c for c in f.choices if str(c) == text]
        return match[0] if match else _convert(f.item_type, text)
    if f.kind == "json":
        try:
            return strictjson.loads(text)
        except ValueError:
            return text
    return text
