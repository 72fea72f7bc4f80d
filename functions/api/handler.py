"""Lambda entry point: the same FastAPI app through Mangum (lifespan off)."""

from __future__ import annotations

from mangum import Mangum

from functions.api.app import create_app

_handler = None


def handler(event, context):
    global _handler
    if _handler is None:  # built once per execution environment, on the first event
        _handler = Mangum(create_app(), lifespan="off")
    return _handler(event, context)
