"""Write a Cog model's OpenAPI schema (the `.cog/openapi_schema.json` that `cog build` bakes in) to stdout.

    python schemagen.py MODEL_DIR

Standalone on purpose: it runs with the *model's* Python (which has cog==0.23.1 installed), so it
imports only the standard library, `yaml` and `cog`. Types come from cog's own inspector
(`cog._inspector.create_predictor`), so a signature cog refuses to serve is refused here too; the
document is laid out the way cog's Go generator (`pkg/schema/openapi_spec.go`) lays it out.

Exit status 0 with the JSON on stdout, or 2 with one human-readable line on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import importlib.util
import inspect
import io
import json
import os
import sys
import typing
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

EXIT_FAILURE = 2
OPENAPI_VERSION = "3.0.2"
INFO = {"title": "Cog", "version": "0.1.0"}
ENUM_DESCRIPTION = "An enumeration."
STATUS_VALUES = ["starting", "processing", "succeeded", "canceled", "failed"]

_DEFAULT_GIVEN = "_cogplane_default_given"
_STREAMING = "__cog_streaming__"


class SchemaGenError(Exception):
    """A reason, fit for one line on stderr, why no schema can be produced."""


class _Ordered(dict):
    """A map whose keys keep insertion order on output; plain dicts are written sorted, as Go does."""


def title_case(name: str) -> str:
    """Go's TitleCase: split on '_', upper-case each part's first letter, keep the rest as is."""
    return " ".join(p[:1].upper() + p[1:] for p in name.split("_"))


def go_number(value: Any) -> Any:
    """A bound as Go's encoding/json writes cog's float64 bounds: `1` for 1.0 (and for 1), 20.5 as is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _go_order(value: Any) -> Any:
    if isinstance(value, _Ordered):
        return {k: _go_order(v) for k, v in value.items()}
    if isinstance(value, dict):
        return {k: _go_order(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_go_order(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Loading the predictor
# --------------------------------------------------------------------------------------------


def read_config(model_dir: Path) -> dict:
    import yaml

    cfg_path = model_dir / "cog.yaml"
    if not cfg_path.is_file():
        raise SchemaGenError(f"cog.yaml not found in {model_dir}")
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SchemaGenError(f"cog.yaml is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(cfg, dict):
        raise SchemaGenError("cog.yaml is not a mapping")
    return cfg


def read_ref(model_dir: Path) -> str:
    ref = read_config(model_dir).get("run") or read_config(model_dir).get("predict")
    if not ref:
        raise SchemaGenError("cog.yaml has no 'predict' or 'run' entry")
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise SchemaGenError(f"cog.yaml predict/run must look like 'predict.py:Predictor', got {ref!r}")
    return ref


def read_train_ref(model_dir: Path) -> str | None:
    """cog.yaml `train:` (a function `train.py:train` or a class with a `train` method), if any."""
    ref = read_config(model_dir).get("train")
    if ref is None:
        return None
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise SchemaGenError(f"cog.yaml train must look like 'train.py:train', got {ref!r}")
    return ref


def _install_markers(cog: Any) -> None:
    """Make `@cog.streaming` and explicit `Input(default=...)` observable after import.

    cog 0.23's `streaming` returns the function untouched and `Input()` cannot tell `default=None`
    from no default; the Go generator sees both in the source, so we record them here.
    """
    import cog.input as cog_input

    original_input = cog_input.Input

    def marking_input(*args: Any, **kwargs: Any) -> Any:
        info = original_input(*args, **kwargs)
        object.__setattr__(info, _DEFAULT_GIVEN, bool(args) or "default" in kwargs)
        return info

    def marking_streaming(fn: Any = None) -> Any:
        def decorate(inner: Any) -> Any:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(inner, _STREAMING, True)
            return inner

        return decorate if fn is None else decorate(fn)

    marking_input.__doc__ = original_input.__doc__
    cog.Input = cog_input.Input = marking_input
    cog.streaming = marking_streaming


def load_module(model_dir: Path, module_file: str) -> str:
    path = model_dir / module_file
    if not path.is_file():
        raise SchemaGenError(f"{module_file} not found in {model_dir}")
    module_name = path.name.removesuffix(".py")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SchemaGenError(f"{module_file} could not be imported: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: B036 - SystemExit/KeyboardInterrupt from user code are failures too
        raise SchemaGenError(f"{module_file} could not be imported: {_describe(e)}") from None
    return module_name


def _describe(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _selected_function(target: Any) -> Any:
    from cog.predictor import _user_method_owner

    if inspect.isclass(target):
        for name in ("run", "predict"):
            if _user_method_owner(target, name) is not None:
                return getattr(target, name)
        return None
    return target


# --------------------------------------------------------------------------------------------
# JSON Schema fragments (mirrors pkg/schema/types.go and schema_type.go)
# --------------------------------------------------------------------------------------------


def primitive_json(primitive: Any) -> dict:
    from cog._adt import PrimitiveType as P

    if primitive is P.BOOL:
        return {"type": "boolean"}
    if primitive is P.FLOAT:
        return {"type": "number"}
    if primitive is P.INTEGER:
        return {"type": "integer"}
    if primitive is P.STRING:
        return {"type": "string"}
    if primitive in (P.PATH, P.FILE):
        return {"type": "string", "format": "uri"}
    if primitive is P.SECRET:
        return {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}
    return {"type": "object"}


def input_type_json(ft: Any) -> dict:
    from cog._adt import Repetition as R

    if ft.union_variants is not None:
        nullable = ft.repetition is R.OPTIONAL
        variants = []
        for variant in ft.union_variants:
            v = input_type_json(variant)
            if nullable:
                v["nullable"] = True
            variants.append(v)
        return {"anyOf": variants}
    if ft.repetition in (R.REPEATED, R.OPTIONAL_REPEATED):
        return {"type": "array", "items": primitive_json(ft.primitive)}
    return primitive_json(ft.primitive)


def encode_default(value: Any) -> Any:
    from cog.types import Secret

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return encode_default(value.value)
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [encode_default(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode_default(v) for k, v in value.items()}
    return str(value)


def build_input(info: Any, fn: Any) -> tuple[dict, list[tuple[str, dict]]]:
    from cog._adt import PrimitiveType as P
    from cog._adt import Repetition as R
    from cog._inspector import _unwrap
    from cog.input import FieldInfo

    params = inspect.signature(_unwrap(fn)).parameters
    properties = _Ordered()
    required: list[str] = []
    enums: list[tuple[str, dict]] = []

    for name, field in sorted(info.inputs.items(), key=lambda kv: kv[1].order):
        raw = params[name].default if name in params else inspect.Parameter.empty
        field_info = raw if isinstance(raw, FieldInfo) else None
        if field_info is not None:
            default_given = getattr(field_info, _DEFAULT_GIVEN, field_info.default is not None)
        else:
            default_given = raw is not inspect.Parameter.empty

        ft = field.type
        prop: dict[str, Any] = {"x-order": field.order}
        if field.choices:
            enum_type = primitive_json(ft.primitive).get("type") or "string"
            enums.append(
                (
                    name,
                    {
                        "title": name,
                        "description": ENUM_DESCRIPTION,
                        "enum": [encode_default(c) for c in field.choices],
                        "type": enum_type,
                    },
                )
            )
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop["title"] = title_case(name)
            prop.update(input_type_json(ft))

        is_union = ft.union_variants is not None
        nullable = ft.repetition in (R.OPTIONAL, R.OPTIONAL_REPEATED)
        # `api_key: Secret = Input(default=None)` is the documented optional-credential idiom.
        if ft.primitive is P.SECRET and ft.repetition is R.REQUIRED and default_given and field.default is None:
            nullable = True
        # A None default on a non-nullable field means "no default" (e.g. seeds picked at run time).
        has_default = default_given and (field.default is not None or nullable)
        if not has_default and (is_union or ft.repetition in (R.REQUIRED, R.REPEATED)):
            required.append(name)
        if has_default:
            prop["default"] = encode_default(field.default)
        if nullable:
            prop["nullable"] = True
        prop.update(_annotations(field, field_info))
        properties[name] = prop

    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, enums


def _annotations(field: Any, field_info: Any) -> dict[str, Any]:
    """An input's description, constraints and flags, in cog's order (what Input(...) declared)."""
    found: dict[str, Any] = {}
    if field.description is not None:
        found["description"] = field.description
    if field.ge is not None:
        found["minimum"] = go_number(field.ge)
    if field.le is not None:
        found["maximum"] = go_number(field.le)
    if field.min_length is not None:
        found["minLength"] = field.min_length
    if field.max_length is not None:
        found["maxLength"] = field.max_length
    if field.regex is not None:
        found["pattern"] = field.regex
    if field.deprecated:
        found["deprecated"] = True
    accept = getattr(field_info, "accept", None)
    if accept is not None:
        found["x-cog-accept"] = accept
    return found


def _is_model_class(tpe: Any) -> bool:
    from cog._inspector import PydanticBaseModel
    from cog.model import BaseModel

    if not inspect.isclass(tpe):
        return False
    return issubclass(tpe, BaseModel) or (PydanticBaseModel is not None and issubclass(tpe, PydanticBaseModel))


def _model_fields(tpe: Any) -> list[tuple[str, Any, bool]]:
    """(name, annotation, has_default) for each field of a cog or pydantic BaseModel."""
    hints = typing.get_type_hints(tpe, include_extras=True)
    if dataclasses.is_dataclass(tpe):
        return [
            (
                f.name,
                hints.get(f.name, f.type),
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
            )
            for f in dataclasses.fields(tpe)
        ]
    model_fields = getattr(tpe, "model_fields", None)
    if model_fields is not None:
        return [(n, hints.get(n, f.annotation), not f.is_required()) for n, f in model_fields.items()]
    return [(n, t, hasattr(tpe, n)) for n, t in hints.items() if not n.startswith("_")]


def _split_optional(tpe: Any) -> tuple[Any, bool]:
    from cog._adt import _is_none_type, _is_union

    if _is_union(tpe):
        args = typing.get_args(tpe)
        rest = [a for a in args if not _is_none_type(a)]
        if len(rest) == 1 and len(rest) != len(args):
            return rest[0], True
    return tpe, False


def output_json(tpe: Any, seen: frozenset = frozenset()) -> dict:
    """JSON schema for an output annotation; `create_predictor` has already accepted it."""
    from cog._adt import PrimitiveType, _is_dict_like, _unwrap_opaque
    from cog.types import AsyncConcatenateIterator, ConcatenateIterator

    inner, opaque = _unwrap_opaque(tpe)
    if opaque:
        if inner is list or typing.get_origin(inner) is list:
            return {"type": "array", "items": {"type": "object"}}
        return {"type": "object"}
    origin = typing.get_origin(tpe)
    args = typing.get_args(tpe)
    if origin is typing.Annotated:
        return output_json(args[0], seen)
    if tpe is Any or _is_dict_like(tpe) or (origin is dict and len(args) != 2):
        return {"type": "object"}
    if origin is dict:
        return {"type": "object", "additionalProperties": output_json(args[1], seen)}
    if _is_model_class(tpe):
        if tpe in seen:
            return {"type": "object"}
        properties = _Ordered()
        required = []
        for name, ann, has_default in _model_fields(tpe):
            field_type, optional = _split_optional(ann)
            prop = output_json(field_type, seen | {tpe})
            if optional:
                prop["nullable"] = True
            prop["title"] = title_case(name)
            if not optional and not has_default:
                required.append(name)
            properties[name] = prop
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema
    if tpe is list or origin is list:
        items = output_json(args[0], seen) if args else {"type": "object"}
        return {"type": "array", "items": items}
    if tpe in (ConcatenateIterator, AsyncConcatenateIterator) or origin in (
        ConcatenateIterator,
        AsyncConcatenateIterator,
    ):
        return {
            "type": "array",
            "items": {"type": "string"},
            "x-cog-array-type": "iterator",
            "x-cog-array-display": "concatenate",
        }
    if origin in (Iterator, AsyncIterator):
        return {"type": "array", "items": output_json(args[0], seen), "x-cog-array-type": "iterator"}
    return primitive_json(PrimitiveType.from_type(tpe))


def is_iterator_output(output_type: Any) -> bool:
    from cog._adt import OutputKind

    return output_type.kind in (OutputKind.ITERATOR, OutputKind.CONCAT_ITERATOR)


# --------------------------------------------------------------------------------------------
# The document (mirrors pkg/schema/openapi_spec.go, predict mode)
# --------------------------------------------------------------------------------------------


def _json_response(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _validation_error_response() -> dict:
    return {
        "description": "Validation Error",
        **_json_response({"$ref": "#/components/schemas/HTTPValidationError"}),
    }


def build_document(
    input_schema: dict,
    enums: list[tuple[str, dict]],
    output_schema: dict,
    streaming: bool,
    *,
    train: bool = False,
    ordered: bool = True,
) -> dict:
    """One mode's document; `train` names things as cog's Go generator does in train mode
    (TrainingInput/TrainingOutput, TrainingRequest/Response, /trainings)."""
    kind = "Training" if train else "Prediction"
    input_key, output_key = ("TrainingInput", "TrainingOutput") if train else ("Input", "Output")
    components = _Ordered()
    components[input_key] = {**input_schema, "title": input_key}
    components[output_key] = {**output_schema, "title": "Output"}
    for name, schema in enums:
        components[name] = schema
    components[f"{kind}Request"] = {
        "title": f"{kind}Request",
        "type": "object",
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"$ref": f"#/components/schemas/{input_key}"},
        },
    }
    components[f"{kind}Response"] = {
        "title": f"{kind}Response",
        "type": "object",
        "properties": {
            "input": {"$ref": f"#/components/schemas/{input_key}"},
            "output": {"$ref": f"#/components/schemas/{output_key}"},
            "id": {"title": "Id", "type": "string"},
            "version": {"title": "Version", "type": "string"},
            "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
            "started_at": {"title": "Started At", "type": "string", "format": "date-time"},
            "completed_at": {"title": "Completed At", "type": "string", "format": "date-time"},
            "status": {"title": "Status", "type": "string"},
            "error": {"title": "Error", "type": "string"},
            "logs": {"title": "Logs", "type": "string"},
            "metrics": {"title": "Metrics", "type": "object"},
        },
    }
    components["Status"] = {
        "title": "Status",
        "description": ENUM_DESCRIPTION,
        "enum": list(STATUS_VALUES),
        "type": "string",
    }
    components["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {
            "detail": {
                "title": "Detail",
                "type": "array",
                "items": {"$ref": "#/components/schemas/ValidationError"},
            }
        },
    }
    components["ValidationError"] = {
        "title": "ValidationError",
        "required": ["loc", "msg", "type"],
        "type": "object",
        "properties": {
            "loc": {
                "title": "Location",
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "msg": {"title": "Message", "type": "string"},
            "type": {"title": "Error Type", "type": "string"},
        },
    }

    empty_ok = {"200": {"description": "Successful Response", **_json_response({})}}
    noun = "training" if train else "prediction"
    endpoint = f"/{noun}s"
    predict: dict[str, Any] = {
        "summary": "Train" if train else "Predict",
        "description": f"Run a single {noun} on the model",
        "operationId": "train_trainings_post" if train else "predict_predictions_post",
        "requestBody": _json_response({"$ref": f"#/components/schemas/{kind}Request"}),
        "responses": {
            "200": {
                "description": "Successful Response",
                **_json_response({"$ref": f"#/components/schemas/{kind}Response"}),
            },
            "422": _validation_error_response(),
        },
    }
    if streaming and not train:
        predict["x-cog-streaming"] = True

    paths = _Ordered()
    paths["/"] = {"get": {"summary": "Root", "operationId": "root__get", "responses": empty_ok}}
    paths["/health-check"] = {
        "get": {
            "summary": "Healthcheck",
            "operationId": "healthcheck_health_check_get",
            "responses": empty_ok,
        }
    }
    paths[endpoint] = {"post": predict}
    paths[f"{endpoint}/{{{noun}_id}}/cancel"] = {
        "post": {
            "summary": "Cancel",
            "operationId": f"cancel_{noun}s__{noun}_id__cancel_post",
            "parameters": [
                {
                    "required": True,
                    "schema": {"title": f"{noun.title()} Id", "type": "string"},
                    "name": f"{noun}_id",
                    "in": "path",
                }
            ],
            "responses": {**empty_ok, "422": _validation_error_response()},
        }
    }
    doc = {
        "openapi": OPENAPI_VERSION,
        "info": dict(INFO),
        "paths": paths,
        "components": {"schemas": components},
    }
    return _go_order(doc) if ordered else doc


def generate(model_dir: Path) -> dict:
    """The OpenAPI document for the predictor that MODEL_DIR/cog.yaml names, merged with the
    training interface's when cog.yaml has `train:` (as cog's GenerateCombined/MergeSchemas does:
    the predict document is the base; train paths and components are added where absent)."""
    model_dir = model_dir.resolve()
    ref = read_ref(model_dir)
    train_ref = read_train_ref(model_dir)
    os.chdir(model_dir)
    # Run as a script, our own folder is sys.path[0]: the model must not import cogplane's modules.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    sys.path.insert(0, str(model_dir))
    try:
        import cog
    except ImportError as e:
        raise SchemaGenError(f"cog is not installed for {sys.executable}: {_describe(e)}") from None
    _install_markers(cog)
    doc = _document(model_dir, ref, train=False)
    if train_ref is None:
        return _go_order(doc)
    train_doc = _document(model_dir, train_ref, train=True)
    for key, value in train_doc["paths"].items():
        doc["paths"].setdefault(key, value)
    schemas = doc["components"]["schemas"]
    for key, value in train_doc["components"]["schemas"].items():
        schemas.setdefault(key, value)
    return _go_order(doc)


_LOADED: dict[str, str] = {}  # module file -> module name


def _document(model_dir: Path, ref: str, *, train: bool) -> dict:
    from cog._inspector import _create_predictor_info, _unwrap, _validate_setup, create_predictor

    module_file, target_name = ref.split(":")
    module_name = _LOADED.get(module_file)
    if module_name is None:  # predict.py may also hold the train function: import it once
        module_name = _LOADED[module_file] = load_module(model_dir, module_file)
    target = getattr(sys.modules[module_name], target_name, None)
    if target is None:
        raise SchemaGenError(f"{module_file} has no {target_name!r}")
    try:
        if train and inspect.isclass(target):
            # cog serves a training class's `train` method (coglet's TrainKind); setup() as usual
            train_fn = getattr(target, "train", None)
            if not callable(train_fn):
                raise ValueError(f"{module_name}.{target_name} has no train() method")
            if hasattr(target, "setup"):
                _validate_setup(_unwrap(target.setup))
            fn = train_fn
            info = _create_predictor_info(module_name, target_name, _unwrap(fn), "train", True)
        else:
            info = create_predictor(module_name, target_name)
            fn = _selected_function(target)
        hints = typing.get_type_hints(_unwrap(fn), include_extras=True)
        output_schema = output_json(hints["return"])
    except Exception as e:
        raise SchemaGenError(f"{ref} has an unsupported signature: {_describe(e)}") from None
    streaming = bool(getattr(fn, _STREAMING, False) or getattr(_unwrap(fn), _STREAMING, False))
    if streaming and not train and not is_iterator_output(info.output):
        raise SchemaGenError(
            f"{ref}: @streaming requires an Iterator, AsyncIterator, ConcatenateIterator "
            "or AsyncConcatenateIterator return type"
        )
    input_schema, enums = build_input(info, fn)
    return build_document(input_schema, enums, output_schema, streaming, train=train, ordered=False)


@contextlib.contextmanager
def _quiet_fds() -> Iterator[io.TextIOWrapper]:
    """Send everything the model prints (fd 1 and 2, Python or native) to /dev/null.

    Yields a text stream on the real stdout, for the document.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    real_stdout = io.TextIOWrapper(os.fdopen(os.dup(saved_out), "wb"), encoding="utf-8")
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield real_stdout
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, devnull):
            os.close(fd)
        real_stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: schemagen.py MODEL_DIR\n")
        return EXIT_FAILURE
    try:
        with warnings.catch_warnings(), _quiet_fds() as out:
            warnings.simplefilter("ignore")
            doc = generate(Path(args[0]))
            out.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
    except SchemaGenError as e:
        sys.stderr.write(f"{e}\n")
        return EXIT_FAILURE
    except Exception as e:  # a bug here or in cog's inspector; still one line
        sys.stderr.write(f"schema generation failed: {_describe(e)}\n")
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
