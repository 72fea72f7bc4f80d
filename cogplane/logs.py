"""Structured logs on the deployed shape: one JSON object per line (Powertools Logger's formatter,
so CloudWatch Logs Insights and metric filters can query fields), and the prediction a line is
about on every such line (`prediction_id`): code handling one prediction runs inside
`prediction_context(id)`, and a filter on the handler adds the id to every record logged there
(any logger, any library). Lambda functions call `setup_json_logging` on their first event (off the
import path: the API's cold start), the stream function when its server starts; runner tasks when
COGPLANE_LOG_FORMAT=json (RunnerSettings.log_format; the stack's runner task definitions set it,
`make up` logs plain text). The runner's recorder methods that take a prediction id run inside its
context (`about_prediction`), on whichever thread calls them: its loop, cog's webhooks, the cancel
watch. Lines carry no model inputs, outputs or secrets: status and times only."""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TextIO, TypeVar

_prediction: contextvars.ContextVar[str | None] = contextvars.ContextVar("cogplane_prediction_id", default=None)


class PredictionFilter(logging.Filter):
    """Adds `prediction_id` to records logged inside `prediction_context` (unless they carry one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        prediction_id = _prediction.get()
        if prediction_id and not getattr(record, "prediction_id", None):
            record.prediction_id = prediction_id
        return True


@contextmanager
def prediction_context(prediction_id: str | None) -> Iterator[None]:
    token = _prediction.set(prediction_id)
    try:
        yield
    finally:
        _prediction.reset(token)


P = ParamSpec("P")
R = TypeVar("R")


def about_prediction(method: Callable[Concatenate[Any, str, P], R]) -> Callable[Concatenate[Any, str, P], R]:
    """A method `(self, prediction_id, ...)` runs inside `prediction_context(prediction_id)`, on
    whichever thread calls it (the runner's recorder: its loop, cog's webhooks, the cancel watch)."""

    @functools.wraps(method)
    def wrapper(self: Any, prediction_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with prediction_context(prediction_id):
            return method(self, prediction_id, *args, **kwargs)

    return wrapper


def set_prediction(prediction_id: str | None) -> None:
    """For code that handles one prediction until it ends (a request, a thread)."""
    _prediction.set(prediction_id)


def current_prediction() -> str | None:
    return _prediction.get()


def setup_json_logging(
    service: str, *, level: int = logging.INFO, stream: TextIO | None = None, **keys: str
) -> logging.Handler:
    """Replace the root logger's handlers (Lambda's runtime installs one) with one JSON handler;
    `keys` are added to every line (a runner task's runner_id and pool)."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    handler = logging.StreamHandler(stream or sys.stdout)
    formatter = LambdaPowertoolsFormatter(service=service, utc=True)
    formatter.append_keys(**keys)
    handler.setFormatter(formatter)
    handler.addFilter(PredictionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
