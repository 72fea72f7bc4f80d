"""The runner's logs (cogplane.logs): `python -m gpu_runner` with COGPLANE_LOG_FORMAT=json (the
stack's runner task definitions) writes one JSON object per line to stdout (CloudWatch via
awslogs), and every line logged while it handles a prediction — its start on the runner's loop,
its end on the thread that got cog's webhook — carries that prediction's id. Run end to end
through the entry point against a fake cog (an image version: COG_URL), as tests/runner/test_loop
does; the runner exits when idle."""

from __future__ import annotations

import contextvars
import json
import logging
import signal

import pytest

from gpu_runner.__main__ import main
from tests.runner.test_loop import VERSION
from tests.runner.test_loop import pool as pool  # noqa: F401 - the fixture: an image version's pool

PROMPT = "do-not-log-this-input"


@pytest.fixture
def root_logging():
    """The entry point replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _run_entry_point(settings, fake_cog, monkeypatch, *, log_format: str | None) -> int:
    monkeypatch.setenv("COGPLANE_HOME", str(settings.home))  # the store the test's services use
    monkeypatch.setenv("COGPLANE_PUBLIC_URL", settings.public_url)
    monkeypatch.setenv("COG_URL", fake_cog.url)
    if log_format is None:
        monkeypatch.delenv("COGPLANE_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("COGPLANE_LOG_FORMAT", log_format)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # not the test process's handlers
    return main(["--pool", f"v-{VERSION}", "--idle-timeout", "0.5", "--stop-grace", "2", "--runner-id", "r-logs"])


def test_runner_task_logs_are_json_with_the_prediction_id_on_each_line(
    settings, services, pool, fake_cog, monkeypatch, capsys, root_logging
):
    prediction = pool(PROMPT)
    # a fresh context, as a runner process starts with: creating predictions here (and in earlier
    # tests) names them in this thread's context (set_prediction), which a runner never shares
    assert contextvars.Context().run(_run_entry_point, settings, fake_cog, monkeypatch, log_format="json") == 0
    assert services.state.get_prediction(prediction.id).status == "succeeded"

    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # every line is JSON
    about = [line for line in lines if prediction.id in line["message"]]
    assert about, out
    assert all(line.get("prediction_id") == prediction.id for line in about), about
    messages = [line["message"] for line in about]
    assert f"prediction {prediction.id}: processing" in messages  # the runner's loop
    assert any(m.startswith(f"prediction {prediction.id}: succeeded") for m in messages)  # cog's webhook thread
    assert all(line["service"] == "runner" and line["runner_id"] == "r-logs" for line in lines)
    assert all(line["pool"] == f"v-{VERSION}" for line in lines)
    assert PROMPT not in out  # model inputs are never logged
    # lines about no prediction (the idle exit) name none
    idle = [line for line in lines if line["message"].startswith("idle for")]
    assert idle and "prediction_id" not in idle[0]


def test_runner_logs_plain_text_by_default(settings, services, pool, fake_cog, monkeypatch, capsys, root_logging):
    """`make up`: no COGPLANE_LOG_FORMAT, so no JSON handler replaces the root logger's."""
    pool("plain")
    before = list(logging.getLogger().handlers)
    assert _run_entry_point(settings, fake_cog, monkeypatch, log_format=None) == 0
    assert logging.getLogger().handlers == before
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
