"""`cdk synth` / `cdk deploy` entry point (cdk.json: `python -m infra.app`)."""

from __future__ import annotations

import os

import aws_cdk as cdk

from infra.constants import DEFAULT_STACK_NAME
from infra.stack import CogplaneStack, add_checks


def build_app(context: dict | None = None, *, outdir: str | None = None) -> tuple[cdk.App, CogplaneStack]:
    app = cdk.App(context=context, outdir=outdir)
    name = app.node.try_get_context("cogplane:stackName") or DEFAULT_STACK_NAME
    env = None
    if os.environ.get("CDK_DEFAULT_ACCOUNT"):
        env = cdk.Environment(account=os.environ["CDK_DEFAULT_ACCOUNT"], region=os.environ.get("CDK_DEFAULT_REGION"))
    stack = CogplaneStack(app, name, stack_name=name, env=env,
                          description="cogplane: a self-hosted, Replicate-compatible model platform")
    add_checks(stack)
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
