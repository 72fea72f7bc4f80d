"""Shared fixtures: builders for schemas and bundles, a services instance on a temp folder."""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile

import pytest

from cogplane.settings import Settings
from cogplane.wiring import build_local
from gpu_runner.ecs_metadata import parse_time


def pytest_addoption(parser):
    parser.addoption(
        "--shape",
        choices=("local", "sim-aws"),
        default="local",
        help="which shape the system suites' `stack` fixture starts: `make up` (local) or the simulated "
        "deployment (`make sim-aws`); tests/system/test_sim_aws.py always runs on sim-aws",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "single_machine(reason): a feature only `make up` has; skipped on --shape sim-aws with the reason"
    )
    config.addinivalue_line(
        "markers", "own_shape: starts the simulated deployment itself; the --shape sim-aws pass skips it (already run)"
    )


HELLO_SCHEMA = {
    "openapi": "3.0.2",
    "info": {"title": "Cog", "version": "0.1.0"},
    "paths": {},
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "title": "Input",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
                    "steps": {
                        "type": "integer",
                        "title": "Steps",
                        "default": 2,
                        "minimum": 1,
                        "maximum": 10,
                        "x-order": 1,
                    },
                    "image": {"type": "string", "format": "uri", "title": "Image", "x-order": 2},
                },
            },
            "Output": {"type": "string", "title": "Output"},
        }
    },
}


def make_bundle(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    # gzip's header carries a time too: 0, so that the same files give the same bytes (and version id)
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path / "home", public_url="https://cogplane.test")


@pytest.fixture
def services(settings):
    return build_local(settings, base_url=settings.public_url)


@pytest.fixture
def schema():
    return json.loads(json.dumps(HELLO_SCHEMA))


@pytest.fixture
def receiver():
    """A webhook receiver on 127.0.0.1 that records what it gets (see tests/receiver.py)."""
    from tests.receiver import Receiver

    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """Fake credentials, so no test can ever reach a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


# A model with a secret input (cog's `Secret`), and a value that must never be stored in clear.
SECRET_PLAIN = "sk-live-0123456789-very-secret"
SECRET_PROPERTY = {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True, "x-order": 3}


def secret_schema() -> dict:
    schema = copy.deepcopy(HELLO_SCHEMA)
    schema["components"]["schemas"]["Input"]["properties"]["api_key"] = SECRET_PROPERTY
    return schema


# What a trainable model's schema adds (cog's TrainingInput/TrainingOutput).
TRAIN_SCHEMA_EXTRA = {
    "TrainingInput": {
        "type": "object",
        "title": "TrainingInput",
        "required": ["prefix"],
        "properties": {
            "prefix": {"type": "string", "title": "Prefix", "x-order": 0},
            "steps": {"type": "integer", "title": "Steps", "default": 3, "minimum": 1, "maximum": 100, "x-order": 1},
        },
    },
    "TrainingOutput": {
        "type": "object",
        "title": "Output",
        "required": ["weights"],
        "properties": {"weights": {"type": "string", "format": "uri", "title": "Weights"}},
    },
}


# What an ECS task's metadata endpoint (v4 /task) answers for a runner task, and when it was spawned.
ECS_TASK = {
    "Cluster": "cogplane",
    "TaskARN": "arn:aws:ecs:us-east-1:1:task/cogplane/abc",
    "PullStartedAt": "2026-03-01T12:01:30.250000123Z",
    "PullStoppedAt": "2026-03-01T12:02:10.750000999Z",
    "Containers": [{"Name": "runner", "CreatedAt": "2026-03-01T12:02:11Z", "StartedAt": "2026-03-01T12:02:12Z"}],
}


ECS_SPAWNED = parse_time("2026-03-01T12:00:00Z")
