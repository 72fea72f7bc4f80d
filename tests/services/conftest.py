from __future__ import annotations

import pytest

from cogplane.clock import ManualClock
from cogplane.settings import Settings
from cogplane.wiring import build_local
from tests.conftest import HELLO_SCHEMA, make_bundle


@pytest.fixture
def clock():
    return ManualClock("2026-03-01T12:00:00.000000Z")


@pytest.fixture
def local(tmp_path, clock):
    settings = Settings(home=tmp_path / "home", public_url="https://cogplane.test", allow_networks="127.0.0.0/8")
    services = build_local(settings, clock=clock, base_url=settings.public_url)
    services.accounts.ensure_account("alice")
    return services


def make_version(services):
    alice = services.state.get_account("alice")
    model = services.catalog.create_model(alice, {"owner": "alice", "name": "m", "visibility": "private"})
    version, _ = services.catalog.push_version(
        alice, "alice", "m", bundle=make_bundle({"cog.yaml": "x"}), schema=HELLO_SCHEMA, config={}, cog_version="0.23.1"
    )
    return alice, model, version
