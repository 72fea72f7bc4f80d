"""`cdk synth` / `cdk deploy` entry point (cdk.json: `python -m infra.app`).

Under the CDK CLI the output folder and the context come from the CLI (CDK_OUTDIR,
CDK_CONTEXT_JSON). Run directly (`make synth`, `python -m infra.app [-c key=value ...]`), it writes
the cloud assembly to ./cdk.out with cdk.json's context plus the `-c` values given.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aws_cdk as cdk

from infra.constants import DEFAULT_STACK_NAME
from infra.stack import CogplaneStack, add_checks

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTDIR = "cdk.out"


def build_app(context: dict | None = None, *, outdir: str | None = None) -> tuple[cdk.App, CogplaneStack]:
    app = cdk.App(context=context, outdir=outdir)
    name = app.node.try_get_context("cogplane:stackName") or DEFAULT_STACK_NAME
    env = None
    if os.environ.get("CDK_DEFAULT_ACCOUNT"):
        env = cdk.Environment(account=os.environ["CDK_DEFAULT_ACCOUNT"], region=os.environ.get("CDK_DEFAULT_REGION"))
    stack = CogplaneStack(
        app, name, stack_name=name, env=env, description="cogplane: a self-hosted, Replicate-compatible model platform"
    )
    add_checks(stack)
    return app, stack


def cli_context(argv: list[str], cdk_json: Path = REPO_ROOT / "cdk.json") -> dict:
    """cdk.json's context, then each `-c key=value` / `--context key=value` of argv over it."""
    context: dict = {}
    if cdk_json.is_file():
        context.update(json.loads(cdk_json.read_text()).get("context", {}))
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--context"):
            value = next(args, "")
        elif arg.startswith(("-c=", "--context=")):
            value = arg.split("=", 1)[1]
        else:
            raise SystemExit(f"usage: python -m infra.app [-c key=value ...] (got {arg!r})")
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"context must be given as key=value (got {value!r})")
        context[key] = val
    return context


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("CDK_OUTDIR"):  # the CDK CLI: it passes the folder and the context itself
        app, _ = build_app()
    else:
        app, _ = build_app(cli_context(argv), outdir=DEFAULT_OUTDIR)
    app.synth()


if __name__ == "__main__":
    main()
