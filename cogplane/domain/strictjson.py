"""The one JSON parser for everything a caller sends (request bodies, multipart JSON parts, pushed
schemas): RFC 8259 JSON only, so whatever it accepts can be stored, served and sent on again.

Python's `json` accepts more than JSON: `NaN`/`Infinity`/`-Infinity` (and `1e400`, which becomes
`inf`), lone UTF-16 surrogates such as `"\\ud800"` (which no UTF-8 encoder can write back out), and
any nesting until the interpreter's recursion limit. Each of those used to be stored and then
break on the way out (a 500 on every later read). This parser refuses them up front.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64  # objects/arrays inside each other; real inputs and schemas nest < 20 deep

_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING = re.compile(r'"[^"]*"')  # once escapes are gone: linear, no backtracking
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"[\[{][\]}]")  # an innermost pair, once only brackets are left
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class StrictJSONError(ValueError):
    """The text is not strict JSON; the message says why, for a 400's detail."""


def _constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {text[:40]} is out of range")
    return value


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `max_depth` before the recursive parser sees it."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be too deep: the common case costs two counts
    # Brackets inside strings do not count: drop escapes, then strings, then all but brackets.
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    # Each pass removes the innermost pairs: nesting of depth d is gone after d passes.
    for _ in range(max_depth):
        reduced = _PAIR.sub("", brackets)
        if reduced == brackets:
            break
        brackets = reduced
    # A pair left after max_depth passes is deeper; so are more unclosed openers than the limit.
    if _PAIR.search(brackets) or brackets.count("[") + brackets.count("{") > max_depth:
        raise StrictJSONError(f"nested deeper than {max_depth} levels")


def check_strings(value: Any) -> None:
    """Refuse lone surrogates in any string, keys included (iterative: depth is already bounded)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise StrictJSONError("a string holds a lone UTF-16 surrogate (not valid Unicode)")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON from UTF-8 bytes or text. Raises StrictJSONError (a ValueError)."""
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"not UTF-8 at byte {exc.start}") from None
    else:
        text = raw
    check_depth(text, max_depth)
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float)
    except StrictJSONError:
        raise
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise StrictJSONError(str(exc)) from None
    if _SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text):
        check_strings(value)  # only an escape (or a str passed in) can carry a surrogate
    return value


def loads_lenient(raw: bytes | str) -> Any:
    """Parse JSON that a model produced (cog's webhooks), keeping what it can: lone surrogates become
    U+FFFD and NaN/Infinity become null, so a model's odd output is stored and shown instead of
    making every later read of the prediction fail. Raises ValueError on what is not JSON at all."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else raw
    value = json.loads(text, parse_constant=lambda _name: None)
    if _SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text):
        value = _replace_surrogates(value)
    return value


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def is_strict(value: Any, *, max_depth: int = MAX_DEPTH) -> bool:
    """True if `value` (already parsed) could have come through `loads`: finite numbers, valid
    Unicode, bounded depth. For values that reach a write by another road (web forms)."""
    try:
        text = json.dumps(value, allow_nan=False)
        check_depth(text, max_depth)
        check_strings(value)
    except (ValueError, TypeError, RecursionError):
        return False
    return True
