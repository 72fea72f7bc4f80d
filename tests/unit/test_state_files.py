"""The single-machine home is owner-only: 0700, state files 0600 (new and existing homes), and a
token is never moved from one account to another."""

from __future__ import annotations

import os
import stat

import pytest

from cogplane.domain.errors import Conflict
from cogplane.settings import Settings
from cogplane.wiring import build_local
from local.bootstrap import ensure_token


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


def test_rate_buckets_live_in_their_own_unsynced_file_and_a_damaged_one_is_replaced(tmp_path):
    from cogplane.adapters.local.sqlite import SqliteRateLimiter

    home = tmp_path / "home"
    services = build_local(Settings(home=home, tls=False))
    assert services.limiter.take("alice:create", per_minute=2, now=1000.0).allowed
    assert (home / "ratelimits.db").exists() and mode(home / "ratelimits.db") == 0o600
    assert services.limiter.db.connection().execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF
    assert services.state.db.connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    # another process's limiter on the same file takes from the same bucket
    other = SqliteRateLimiter.own_file(home / "ratelimits.db")
    assert other.take("alice:create", per_minute=2, now=1000.0).allowed
    assert not other.take("alice:create", per_minute=2, now=1000.0).allowed
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a database" * 100)
    assert SqliteRateLimiter.own_file(damaged).take("k", per_minute=1, now=0.0).allowed


def _damage_rate_buckets(path) -> None:
    """What an OS crash can leave of an unsynced file: a sound header and schema, a garbage page."""
    import sqlite3

    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'rate_buckets'").fetchone()[0]
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xa5" * page_size)


def test_rate_buckets_damaged_past_the_header_are_replaced_and_requests_still_pass(tmp_path):
    from cogplane.adapters.local.sqlite import SqliteRateLimiter

    path = tmp_path / "ratelimits.db"
    limiter = SqliteRateLimiter.own_file(path)
    assert limiter.take("alice:other", per_minute=5, now=1000.0).allowed
    limiter.db.connection().close()
    _damage_rate_buckets(path)
    # the next start: the file opens (its schema is sound) but every bucket write was a 500
    again = SqliteRateLimiter.own_file(path)
    assert again.take("alice:other", per_minute=5, now=1001.0).allowed
    # damaged while running: the request passes (buckets are worth nothing), no DatabaseError
    again.db.connection().close()
    again.db._local.conn = None
    _damage_rate_buckets(path)
    assert again.take("bob:other", per_minute=5, now=1002.0).allowed
