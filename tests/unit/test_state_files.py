"""The single-machine home is owner-only: 0700, state files 0600 (new and existing homes), and a
token is never moved from one account to another."""

from __future__ import annotations

import os
import stat

import pytest

from cogplane.domain.errors import Conflict
from cogplane.embedded.bootstrap import ensure_token
from cogplane.settings import Settings
from cogplane.wiring import build_local


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_home_is_0700_and_every_state_file_0600(tmp_path):
    home = tmp_path / "home"
    services = build_local(Settings(home=home, tls=False))
    services.accounts.ensure_account("alice")  # writes: the WAL and shared-memory files exist now
    ensure_token(services, "alice", home, None)
    assert mode(home) == 0o700
    names = ["cogplane.db", "cogplane.db-wal", "cogplane.db-shm", "secret", "token"]
    for name in names:
        assert (home / name).exists(), name
        assert mode(home / name) == 0o600, name


def test_an_existing_home_is_tightened_at_start(tmp_path):
    home = tmp_path / "home"
    build_local(Settings(home=home, tls=False)).accounts.ensure_account("alice")
    os.chmod(home, 0o755)
    for name in ("cogplane.db", "cogplane.db-wal", "cogplane.db-shm", "secret"):
        os.chmod(home / name, 0o644)
    build_local(Settings(home=home, tls=False))
    assert mode(home) == 0o700
    for name in ("cogplane.db", "cogplane.db-wal", "cogplane.db-shm", "secret"):
        assert mode(home / name) == 0o600, name


def test_issuing_another_accounts_token_is_refused_and_changes_nothing(services):
    services.accounts.ensure_account("alice")
    services.accounts.ensure_account("mallory")
    token = services.accounts.issue_token("alice", "r8_alice-token-0123456789")
    assert services.accounts.issue_token("alice", token) == token  # again for alice: fine
    with pytest.raises(Conflict, match="already belongs to another account"):
        services.accounts.issue_token("mallory", token)
    assert services.accounts.authenticate(f"Bearer {token}").username == "alice"
