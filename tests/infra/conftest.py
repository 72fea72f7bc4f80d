"""Synthesize the stack once per session, offline: no Docker, no AWS account, no staged wheels."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

try:
    import aws_cdk  # noqa: F401
except ImportError:  # the infra extra is not installed: pip install -e '.[infra]'
    collect_ignore_glob = ["test_*.py"]

PLACEHOLDER_IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"


def synth(tmp_path_factory, **context):
    from infra.app import build_app

    asset = tmp_path_factory.mktemp("lambda-asset")
    (asset / "index.py").write_text("def handler(event, context):\n    return None\n")
    ctx = {"cogplane:runnerImage": PLACEHOLDER_IMAGE, "cogplane:lambdaAsset": str(asset), **context}
    app, stack = build_app(ctx, outdir=str(tmp_path_factory.mktemp("cdk.out")))
    app.synth()
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    return synth(tmp_path_factory)


@pytest.fixture(scope="session")
def template(stack):
    from aws_cdk.assertions import Template

    return Template.from_stack(stack)
