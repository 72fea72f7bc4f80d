"""Golden tests for schemagen.py (the OpenAPI document cog bundles) and the schema helpers.

Regenerate the goldens after an intended change with `UPDATE_GOLDEN=1 pytest tests/unit/test_schemagen.py`
and review the diff: every byte of them is what a cog server and the clients will see.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cogplane.schema import (
    SCHEMAGEN,
    SchemaError,
    file_input_names,
    generate_schema,
    input_properties_ordered,
    is_concatenate_output,
    is_iterator_output,
    resolve_prop,
    supports_streaming,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PREDICTORS = FIXTURES / "predictors"
GOLDEN = FIXTURES / "golden"
VENV_BIN = Path(sys.executable).parent

GOLDEN_MODELS = [
    "inputs_all",
    "inputs_union",
    "runner",
    "output_int",
    "output_list_path",
    "output_iterator",
    "output_concat",
    "output_concat_streaming",
    "output_model",
    "output_dict",
    "output_any",
]


def golden_text(schema: dict) -> str:
    # Key order is kept: it is part of the format (Go's generator writes sorted maps, ordered components).
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@pytest.fixture(scope="module")
def generated() -> dict[str, dict]:
    return {name: generate_schema(PREDICTORS / name) for name in GOLDEN_MODELS}


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_schema_matches_golden(generated, name):
    path = GOLDEN / f"{name}.json"
    text = golden_text(generated[name])
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"schema for {name} drifted from {path}"


def test_go_number_writes_integral_bounds_as_integers():
    from cogplane.schemagen import go_number

    assert (
        json.dumps([go_number(1.0), go_number(0.0), go_number(-3.0), go_number(20.5), go_number(7), go_number(True)])
        == "[1, 0, -3, 20.5, 7, true]"
    )


def test_document_skeleton_is_cogs(generated):
    doc = generated["output_int"]
    assert list(doc) == ["components", "info", "openapi", "paths"]
    assert doc["openapi"] == "3.0.2"
    assert doc["info"] == {"title": "Cog", "version": "0.1.0"}
    assert list(doc["paths"]) == ["/", "/health-check", "/predictions", "/predictions/{prediction_id}/cancel"]
    assert list(doc["components"]["schemas"]) == [
        "Input",
        "Output",
        "PredictionRequest",
        "PredictionResponse",
        "Status",
        "HTTPValidationError",
        "ValidationError",
    ]
    assert "x-cog-streaming" not in doc["paths"]["/predictions"]["post"]


def test_choices_become_enum_components_after_output(generated):
    schemas = generated["inputs_all"]["components"]["schemas"]
    assert list(schemas)[:4] == ["Input", "Output", "fmt", "size"]
    assert schemas["fmt"] == {
        "description": "An enumeration.",
        "enum": ["png", "jpg", "webp"],
        "title": "fmt",
        "type": "string",
    }
    assert schemas["size"]["type"] == "integer"
    fmt = schemas["Input"]["properties"]["fmt"]
    assert fmt["allOf"] == [{"$ref": "#/components/schemas/fmt"}]
    assert "title" not in fmt and "type" not in fmt


def test_input_rules_follow_cogs_generator(generated):
    inp = generated["inputs_all"]["components"]["schemas"]["Input"]
    props = inp["properties"]
    # Required: no default and not Optional. Path with default=None counts as "no default".
    assert inp["required"] == ["prompt", "image", "images", "mask"]
    # Bounds are written the way Go's encoding/json writes cog's float64 bounds: integral ones as
    # integers (`"minimum": 1`, also `ge=0` on a float input), the rest as they are.
    assert props["steps"]["minimum"] == 1 and props["steps"]["maximum"] == 10
    assert type(props["steps"]["minimum"]) is int and type(props["steps"]["maximum"]) is int
    assert type(props["scale"]["minimum"]) is int and props["scale"]["maximum"] == 20.5
    assert '"minimum": 1,' in golden_text(generated["inputs_all"])
    assert props["story"]["minLength"] == 1 and props["story"]["maxLength"] == 5000
    assert props["slug"]["pattern"] == "^[a-z]+$"
    assert props["api_key"] == {
        "default": None,
        "description": "API key",
        "format": "password",
        "nullable": True,
        "title": "Api Key",
        "type": "string",
        "writeOnly": True,
        "x-cog-secret": True,
        "x-order": 9,
    }
    assert props["document"]["format"] == "uri" and props["document"]["nullable"] is True
    assert props["images"]["items"] == {"format": "uri", "type": "string"}
    assert props["seed"] == {
        "description": "Random seed",
        "nullable": True,
        "title": "Seed",
        "type": "integer",
        "x-order": 13,
    }
    assert props["negative"]["default"] is None
    assert props["legacy"]["deprecated"] is True
    assert props["mask"]["x-cog-accept"] == "image/*"
    assert props["mode"]["default"] == "fast" and props["count"]["default"] == 3
    assert [p["x-order"] for p in props.values()] == list(range(len(props)))


def test_none_default_on_plain_type_means_required(generated):
    inp = generated["inputs_union"]["components"]["schemas"]["Input"]
    assert "seed" in inp["required"]
    assert "default" not in inp["properties"]["seed"]


@pytest.mark.parametrize(
    ("name", "output"),
    [
        ("output_int", {"title": "Output", "type": "integer"}),
        ("runner", {"title": "Output", "type": "string"}),
        ("inputs_all", {"format": "uri", "title": "Output", "type": "string"}),
        (
            "output_list_path",
            {"items": {"format": "uri", "type": "string"}, "title": "Output", "type": "array"},
        ),
        (
            "output_iterator",
            {"items": {"type": "string"}, "title": "Output", "type": "array", "x-cog-array-type": "iterator"},
        ),
        (
            "output_concat",
            {
                "items": {"type": "string"},
                "title": "Output",
                "type": "array",
                "x-cog-array-display": "concatenate",
                "x-cog-array-type": "iterator",
            },
        ),
        ("output_dict", {"additionalProperties": {"type": "object"}, "title": "Output", "type": "object"}),
        ("output_any", {"title": "Output", "type": "object"}),
    ],
)
def test_output_kinds(generated, name, output):
    assert generated[name]["components"]["schemas"]["Output"] == output


def test_base_model_output_is_an_object(generated):
    out = generated["output_model"]["components"]["schemas"]["Output"]
    assert out["type"] == "object"
    assert list(out["properties"]) == ["text", "score", "image", "extra_files", "note", "count"]
    assert out["properties"]["extra_files"] == {
        "items": {"format": "uri", "type": "string"},
        "title": "Extra Files",
        "type": "array",
    }
    assert out["properties"]["note"] == {"nullable": True, "title": "Note", "type": "string"}
    assert out["required"] == ["text", "score", "image", "extra_files"]


def test_streaming_decorator_sets_x_cog_streaming(generated):
    assert generated["output_concat_streaming"]["paths"]["/predictions"]["post"]["x-cog-streaming"] is True
    assert supports_streaming(generated["output_concat_streaming"])
    assert not supports_streaming(generated["output_concat"])


def test_base_runner_run_style(generated):
    inp = generated["runner"]["components"]["schemas"]["Input"]
    assert inp["required"] == ["text"]
    assert inp["properties"]["times"] == {
        "default": 1,
        "minimum": 1,
        "title": "Times",
        "type": "integer",
        "x-order": 1,
    }


# ---- failures -------------------------------------------------------------------------------


def test_import_error_is_reported_in_one_line():
    with pytest.raises(SchemaError) as err:
        generate_schema(PREDICTORS / "import_error")
    assert str(err.value) == "predict.py could not be imported: ModuleNotFoundError: No module named 'torch'"


def test_unsupported_signature_is_reported():
    with pytest.raises(SchemaError) as err:
        generate_schema(PREDICTORS / "bad_signature")
    assert str(err.value) == (
        "predict.py:Predictor has an unsupported signature: ValueError: predict() must not have **kwargs"
    )


def test_streaming_needs_an_iterator_output():
    with pytest.raises(SchemaError, match="@streaming requires an Iterator"):
        generate_schema(PREDICTORS / "bad_streaming")


def test_missing_cog_yaml(tmp_path):
    with pytest.raises(SchemaError, match=r"^cog\.yaml not found in "):
        generate_schema(tmp_path)


def test_cog_yaml_without_predict(tmp_path):
    (tmp_path / "cog.yaml").write_text("build:\n  python_version: '3.11'\n")
    with pytest.raises(SchemaError, match="cog.yaml has no 'predict' or 'run' entry"):
        generate_schema(tmp_path)


def test_missing_class(tmp_path):
    (tmp_path / "cog.yaml").write_text('predict: "predict.py:Nope"\n')
    (tmp_path / "predict.py").write_text("X = 1\n")
    with pytest.raises(SchemaError, match="predict.py has no 'Nope'"):
        generate_schema(tmp_path)


def test_exit_code_and_single_stderr_line():
    proc = subprocess.run(
        [sys.executable, str(SCHEMAGEN), str(PREDICTORS / "import_error")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "predict.py could not be imported: ModuleNotFoundError: No module named 'torch'"
    ]


def test_missing_interpreter(tmp_path):
    with pytest.raises(SchemaError, match="could not run"):
        generate_schema(PREDICTORS / "output_int", python=str(tmp_path / "no-python"))


# ---- helpers --------------------------------------------------------------------------------


def test_iterator_helpers(generated):
    kinds = {
        name: (is_iterator_output(generated[name]), is_concatenate_output(generated[name]))
        for name in ("output_iterator", "output_concat", "output_list_path", "output_int")
    }
    assert kinds == {
        "output_iterator": (True, False),
        "output_concat": (True, True),
        "output_list_path": (False, False),
        "output_int": (False, False),
    }


def test_file_input_names(generated):
    assert file_input_names(generated["inputs_all"]) == ["image", "document", "images", "mask"]
    assert file_input_names(generated["output_int"]) == []


def test_input_properties_ordered_follows_x_order():
    schema = {
        "components": {
            "schemas": {"Input": {"properties": {"b": {"x-order": 1}, "a": {"x-order": 2}, "c": {"x-order": 0}}}}
        }
    }
    assert [name for name, _ in input_properties_ordered(schema)] == ["c", "b", "a"]


def test_resolve_prop_follows_the_enum_ref(generated):
    schema = generated["inputs_all"]
    props = schema["components"]["schemas"]["Input"]["properties"]
    assert resolve_prop(schema, props["size"]) == {
        "default": 512,
        "description": "Output size",
        "enum": [256, 512, 1024],
        "type": "integer",
        "x-order": 6,
    }
    assert resolve_prop(schema, props["prompt"]) == props["prompt"]


# ---- the real cog server accepts the schema ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.slow
def test_real_cog_server_validates_with_our_schema(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(PREDICTORS / "runner", model)
    (model / ".cog").mkdir()
    (model / ".cog" / "openapi_schema.json").write_text(json.dumps(generate_schema(model)))
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "COG_PREDICT_TYPE_STUB": "predict.py:Runner",
        "COG_SETUP_TIMEOUT": "60",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
        cwd=model,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                status = _request(f"{base}/health-check")[1].get("status")
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                status = None
            if status == "READY":
                break
            assert proc.poll() is None, "cog server exited"
            time.sleep(0.1)
        assert status == "READY"

        code, body = _request(f"{base}/openapi.json")
        assert code == 200 and body["components"]["schemas"]["Input"]["required"] == ["text"]

        code, body = _request(f"{base}/predictions", {"input": {"text": "hi", "times": 0}})
        assert code == 422
        assert body["detail"][0]["loc"] == ["body", "input", "times"]

        code, body = _request(f"{base}/predictions", {"input": {"times": 2}})
        assert code == 422
        assert body["detail"][0]["loc"] == ["body", "input", "text"]

        for _ in range(50):  # cog answers 409 until the previous slot is freed
            code, body = _request(f"{base}/predictions", {"input": {"text": "hi", "times": 2}})
            if code != 409:
                break
            time.sleep(0.05)
        assert code == 200, body
        assert body["status"] == "succeeded" and body["output"] == "hihi"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ---- training interfaces (cog.yaml `train:`) ------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_train_function_adds_cogs_training_components_and_paths():
    doc = generate_schema(EXAMPLES / "hello-train")
    schemas = doc["components"]["schemas"]
    # the predict document is the base; train mode's names are added (cog's MergeSchemas)
    assert schemas["Input"]["required"] == ["text"]
    assert schemas["TrainingInput"]["title"] == "TrainingInput"
    assert schemas["TrainingInput"]["required"] == ["prefix"]
    assert schemas["TrainingInput"]["properties"]["steps"]["minimum"] == 1.0
    assert schemas["TrainingOutput"] == {
        "properties": {"weights": {"format": "uri", "title": "Weights", "type": "string"}},
        "required": ["weights"],
        "title": "Output",
        "type": "object",
    }
    assert schemas["TrainingRequest"]["properties"]["input"] == {"$ref": "#/components/schemas/TrainingInput"}
    assert schemas["TrainingResponse"]["properties"]["output"] == {"$ref": "#/components/schemas/TrainingOutput"}
    post = doc["paths"]["/trainings"]["post"]
    assert post["operationId"] == "train_trainings_post" and post["summary"] == "Train"
    cancel = doc["paths"]["/trainings/{training_id}/cancel"]["post"]
    assert cancel["parameters"][0]["name"] == "training_id"
    assert "/predictions" in doc["paths"]


def test_train_method_of_a_base_runner_class():
    doc = generate_schema(PREDICTORS / "train_class")
    schemas = doc["components"]["schemas"]
    assert list(schemas["Input"]["properties"]) == ["text"]
    assert schemas["TrainingInput"]["required"] == ["word"]
    assert schemas["TrainingInput"]["properties"]["epochs"]["default"] == 1
    assert schemas["TrainingOutput"] == {"format": "uri", "title": "Output", "type": "string"}


def test_bad_train_signature_is_refused_with_the_reason():
    with pytest.raises(SchemaError) as err:
        generate_schema(PREDICTORS / "train_bad")
    assert str(err.value) == "train.py:train has an unsupported signature: ValueError: train() must not have **kwargs"


def test_malformed_train_entry(tmp_path):
    shutil.copytree(PREDICTORS / "runner", tmp_path / "m")
    (tmp_path / "m" / "cog.yaml").write_text('run: "predict.py:Runner"\ntrain: "train.py"\n')
    with pytest.raises(SchemaError, match="cog.yaml train must look like 'train.py:train'"):
        generate_schema(tmp_path / "m")


def test_real_cog_server_trains_with_our_schema(tmp_path):
    """coglet in train mode validates /trainings against our TrainingInput and runs train()."""
    model = tmp_path / "model"
    shutil.copytree(EXAMPLES / "hello-train", model)
    (model / ".cog").mkdir()
    (model / ".cog" / "openapi_schema.json").write_text(json.dumps(generate_schema(model)))
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
        "COG_TRAIN_TYPE_STUB": "train.py:train",
        "COG_SETUP_TIMEOUT": "60",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1", "--x-mode", "train"],
        cwd=model,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != "READY":
            try:
                status = _request(f"{base}/health-check")[1].get("status")
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                time.sleep(0.1)
            assert proc.poll() is None, "cog server exited"
        assert status == "READY"
        code, body = _request(f"{base}/trainings", {"input": {"prefix": "hey", "steps": 0}})
        assert code == 422 and body["detail"][0]["loc"] == ["body", "input", "steps"]
        for _ in range(50):
            code, body = _request(f"{base}/trainings", {"input": {"prefix": "hey", "steps": 1}})
            if code != 409:
                break
            time.sleep(0.05)
        assert code == 200, body
        assert body["status"] == "succeeded"
        assert body["output"]["weights"].startswith("data:")  # no --upload-url: inline
        assert "training step 1/1" in body["logs"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
