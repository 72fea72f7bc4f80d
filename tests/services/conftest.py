from __future__ import annotations

import pytest

from cogplane.clock import ManualClock
from cogplane.settings import Settings
from cogplane.wiring import build_local


@pytest.fixture
def clock():
    return ManualClock("2026-03-01T12:00:00.000000Z")


@pytest.fixture
def local(tmp_path, clock):
    settings = Settings(home=tmp_path / "home", public_url="https://cogplane.test", allow_networks="127.0.0.0/8")
    services = build_local(settings, clock=clock, base_url=settings.public_url)
    services.accounts.ensure_account("alice")
    return services
