"""validate_input against the golden schemas of tests/fixtures/predictors (see test_schemagen.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cogplane.domain.errors import InputValidationError, Unprocessable
from cogplane.domain.validation import validate_input

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"

GOOD = {
    "prompt": "a cat",
    "image": "https://example.com/cat.png",
    "images": ["https://example.com/1.png", "data:image/png;base64,AAAA"],
    "mask": "https://example.com/mask.png",
}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((GOLDEN / "inputs_all.json").read_text())


@pytest.fixture(scope="module")
def union_schema() -> dict:
    return json.loads((GOLDEN / "inputs_union.json").read_text())


def errors_of(schema: dict, value) -> list[dict]:
    with pytest.raises(InputValidationError) as err:
        validate_input(schema, value)
    return err.value.errors


def one_error(schema: dict, **fields) -> dict:
    errors = errors_of(schema, {**GOOD, **fields})
    assert len(errors) == 1, errors
    return errors[0]


# ---- what comes back ------------------------------------------------------------------------


def test_valid_input_is_returned_without_defaults(schema):
    assert validate_input(schema, dict(GOOD)) == GOOD


def test_every_kind_of_valid_value(schema):
    value = {
        **GOOD,
        "story": "x" * 5000,
        "steps": 10,
        "scale": 0,
        "enhance": True,
        "fmt": "webp",
        "size": 1024,
        "document": None,
        "api_key": "r8_secret",
        "tags": [],
        "negative": None,
        "seed": None,
        "slug": "dog",
        "legacy": "y",
        "mode": "slow",
        "count": -1,
    }
    assert validate_input(schema, value) == value


def test_unknown_fields_are_dropped(schema):
    assert validate_input(schema, {**GOOD, "bogus": 1, "other": None}) == GOOD


def test_integral_float_for_integer_becomes_int(schema):
    out = validate_input(schema, {**GOOD, "steps": 2.0, "size": 512.0, "count": -3.0})
    assert out["steps"] == 2 and type(out["steps"]) is int
    assert out["size"] == 512 and type(out["size"]) is int
    assert type(out["count"]) is int


def test_number_accepts_ints_and_keeps_them(schema):
    out = validate_input(schema, {**GOOD, "scale": 3})
    assert out["scale"] == 3 and type(out["scale"]) is int


def test_input_is_not_mutated(schema):
    value = {**GOOD, "steps": 2.0, "bogus": True}
    validate_input(schema, value)
    assert value["steps"] == 2.0 and "bogus" in value


# ---- required ---------------------------------------------------------------------------------


def test_missing_required_fields_are_all_reported_in_x_order(schema):
    errors = errors_of(schema, {"steps": 3})
    assert errors == [
        {"field": "prompt", "msg": "Field required", "type": "required"},
        {"field": "image", "msg": "Field required", "type": "required"},
        {"field": "images", "msg": "Field required", "type": "required"},
        {"field": "mask", "msg": "Field required", "type": "required"},
    ]


@pytest.mark.parametrize("value", [None, {}])
def test_none_input_is_an_empty_object(schema, value):
    assert [e["field"] for e in errors_of(schema, value)] == ["prompt", "image", "images", "mask"]


def test_none_input_is_fine_when_nothing_is_required():
    schema = json.loads((GOLDEN / "output_iterator.json").read_text())
    assert validate_input(schema, None) == {}


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "array"), ("hi", "string"), (3, "integer")])
def test_non_object_input(schema, value, kind):
    assert errors_of(schema, value) == [{"field": None, "msg": f"input must be an object, not {kind}", "type": "type"}]


# ---- types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "msg"),
    [
        ("steps", 2.5, '2.5 is not of type "integer"'),
        ("steps", "three", '"three" is not of type "integer"'),
        ("steps", "3", '"3" is not of type "integer"'),
        ("steps", True, 'true is not of type "integer"'),
        ("scale", "big", '"big" is not of type "number"'),
        ("scale", False, 'false is not of type "number"'),
        ("scale", float("nan"), "NaN is not a finite number"),
        ("enhance", 1, '1 is not of type "boolean"'),
        ("enhance", "true", '"true" is not of type "boolean"'),
        ("prompt", 5, '5 is not of type "string"'),
        ("prompt", ["a"], '["a"] is not of type "string"'),
        ("image", 5, '5 is not of type "string"'),
        ("image", {"url": "x"}, '{"url":"x"} is not of type "string"'),
        ("api_key", 123, '123 is not of type "string"'),
        ("tags", "a", '"a" is not of type "array"'),
        ("size", "512", '"512" is not of type "integer"'),
    ],
)
def test_type_errors(schema, field, value, msg):
    assert one_error(schema, **{field: value}) == {"field": field, "msg": msg, "type": "type"}


@pytest.mark.parametrize("field", ["prompt", "steps", "enhance", "image", "tags", "fmt", "slug"])
def test_null_only_for_nullable_fields(schema, field):
    error = one_error(schema, **{field: None})
    assert error["type"] == "type" and error["msg"].startswith("null is not of type")


@pytest.mark.parametrize("field", ["document", "api_key", "negative", "seed"])
def test_null_is_fine_for_optional_fields(schema, field):
    assert validate_input(schema, {**GOOD, field: None})[field] is None


# ---- constraints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "rule", "msg"),
    [
        ("steps", 99, "maximum", "99 is greater than the maximum of 10"),
        ("steps", 0, "minimum", "0 is less than the minimum of 1"),
        ("steps", 11.0, "maximum", "11 is greater than the maximum of 10"),
        ("scale", 21, "maximum", "21 is greater than the maximum of 20.5"),
        ("scale", -0.5, "minimum", "-0.5 is less than the minimum of 0"),
        ("story", "", "minLength", '"" is shorter than 1 character'),
        ("story", "x" * 5001, "maxLength", f'"{"x" * 80}…" is longer than 5000 characters'),
        ("slug", "Cat", "pattern", '"Cat" does not match "^[a-z]+$"'),
        ("fmt", "gif", "enum", '"gif" is not one of ["png","jpg","webp"]'),
        ("size", 300, "enum", "300 is not one of [256,512,1024]"),
    ],
)
def test_constraint_errors(schema, field, value, rule, msg):
    assert one_error(schema, **{field: value}) == {"field": field, "msg": msg, "type": rule}


def test_boundaries_are_inclusive(schema):
    out = validate_input(schema, {**GOOD, "steps": 1, "scale": 20.5, "story": "x"})
    assert (out["steps"], out["scale"], out["story"]) == (1, 20.5, "x")


def test_enum_is_json_equality():
    schema = {
        "components": {
            "schemas": {
                "Input": {"properties": {"flag": {"x-order": 0, "allOf": [{"$ref": "#/components/schemas/flag"}]}}},
                "flag": {"enum": [1, 2], "type": "integer"},
            }
        }
    }
    assert validate_input(schema, {"flag": 1.0}) == {"flag": 1}
    assert errors_of(schema, {"flag": True})[0]["type"] == "type"


# ---- arrays ---------------------------------------------------------------------------------


def test_array_items_are_checked(schema):
    errors = errors_of(schema, {**GOOD, "tags": ["a", 3, None], "images": ["https://x/1.png", 5]})
    assert errors == [
        {"field": "tags", "msg": 'item 1: 3 is not of type "string"', "type": "type"},
        {"field": "tags", "msg": 'item 2: null is not of type "string"', "type": "type"},
        {"field": "images", "msg": 'item 1: 5 is not of type "string"', "type": "type"},
    ]


def test_list_constraints_apply_to_each_item():
    schema = {
        "components": {
            "schemas": {
                "Input": {
                    "properties": {
                        "nums": {"x-order": 0, "type": "array", "items": {"type": "integer"}, "minimum": 1.0},
                        "names": {"x-order": 1, "type": "array", "items": {"type": "string"}, "maxLength": 2},
                    }
                }
            }
        }
    }
    assert validate_input(schema, {"nums": [1, 2.0], "names": ["ab"]}) == {"nums": [1, 2], "names": ["ab"]}
    assert errors_of(schema, {"nums": [0], "names": ["abc"]}) == [
        {"field": "nums", "msg": "item 0: 0 is less than the minimum of 1", "type": "minimum"},
        {"field": "names", "msg": 'item 0: "abc" is longer than 2 characters', "type": "maxLength"},
    ]


# ---- unions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", 3])
def test_union_accepts_any_variant(union_schema, value):
    assert validate_input(union_schema, {"value": value, "seed": 1}) == {"value": value, "seed": 1}


def test_union_rejects_other_types(union_schema):
    assert errors_of(union_schema, {"value": 2.5, "seed": 1}) == [
        {"field": "value", "msg": "2.5 is not valid under any of the given schemas", "type": "type"}
    ]


def test_nullable_union(union_schema):
    out = validate_input(union_schema, {"value": "x", "seed": 1, "ratio": None})
    assert out["ratio"] is None
    assert validate_input(union_schema, {"value": "x", "seed": 1, "ratio": 2.5})["ratio"] == 2.5


def test_any_of_with_null_variant_from_older_schemas():
    schema = {
        "components": {
            "schemas": {
                "Input": {"properties": {"x": {"x-order": 0, "anyOf": [{"type": "integer"}, {"type": "null"}]}}}
            }
        }
    }
    assert validate_input(schema, {"x": None}) == {"x": None}
    assert validate_input(schema, {"x": 4.0}) == {"x": 4}
    assert errors_of(schema, {"x": "a"})[0]["type"] == "type"


def test_none_default_on_plain_type_is_required(union_schema):
    assert errors_of(union_schema, {"value": "x"}) == [{"field": "seed", "msg": "Field required", "type": "required"}]


# ---- all at once ----------------------------------------------------------------------------


def test_all_errors_are_collected(schema):
    errors = errors_of(schema, {"prompt": 1, "steps": 99, "fmt": "gif", "slug": "A", "bogus": "x"})
    assert [(e["field"], e["type"]) for e in errors] == [
        ("prompt", "type"),
        ("steps", "maximum"),
        ("fmt", "enum"),
        ("image", "required"),
        ("images", "required"),
        ("slug", "pattern"),
        ("mask", "required"),
    ]


def test_error_is_a_422_with_a_readable_detail(schema):
    with pytest.raises(InputValidationError) as err:
        validate_input(schema, {**GOOD, "steps": 99, "fmt": "gif"})
    assert isinstance(err.value, Unprocessable) and err.value.status == 422
    assert err.value.field == "steps"
    assert err.value.detail == (
        'steps: 99 is greater than the maximum of 10; fmt: "gif" is not one of ["png","jpg","webp"]'
    )


def test_schema_without_input_component_accepts_anything():
    assert validate_input({"components": {"schemas": {}}}, {"a": 1}) == {"a": 1}
