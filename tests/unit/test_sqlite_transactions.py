"""The single machine's SQLite transactions (cogplane/adapters/local/sqlite.py `Database`): a write
nested in another joins it as a savepoint, and `nowait` writes refuse to wait for the write lock
(the API's event loop creates with them: functions/api/routers/predictions.py `_run_create`)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cogplane.adapters.local.sqlite import Database
from cogplane.ports import WouldBlock


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database(str(tmp_path / "state.db"))
    with db.write() as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
    return db


def rows(db: Database) -> list[str]:
    return [r["v"] for r in db.read("SELECT v FROM t ORDER BY rowid")]


def test_a_nested_write_joins_the_outer_transaction(db: Database, tmp_path: Path) -> None:
    other = sqlite3.connect(str(tmp_path / "state.db"))  # another process's view
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES ('a')")
        with db.write() as inner:
            assert inner is conn
            inner.execute("INSERT INTO t VALUES ('b')")
        assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0  # nothing committed yet
    assert rows(db) == ["a", "b"]
    assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2


def test_a_failed_nested_write_undoes_only_its_own_writes(db: Database) -> None:
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES ('kept')")
        with pytest.raises(ValueError), db.write() as inner:
            inner.execute("INSERT INTO t VALUES ('undone')")
            raise ValueError("inner")
        conn.execute("INSERT INTO t VALUES ('after')")
    assert rows(db) == ["kept", "after"]


def test_a_failure_after_a_nested_write_undoes_everything(db: Database) -> None:
    with pytest.raises(ValueError), db.write() as conn:
        with db.write() as inner:
            inner.execute("INSERT INTO t VALUES ('b')")
        conn.execute("INSERT INTO t VALUES ('a')")
        raise ValueError("outer")
    assert rows(db) == []
    with db.write() as conn:  # and the next transaction starts clean
        conn.execute("INSERT INTO t VALUES ('c')")
    assert rows(db) == ["c"]


def test_nowait_raises_instead_of_waiting_for_the_lock_and_writes_nothing(db: Database, tmp_path: Path) -> None:
    holder = sqlite3.connect(str(tmp_path / "state.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a runner in the middle of a write
    try:
        with db.nowait():
            with pytest.raises(WouldBlock), db.write() as conn:
                conn.execute("INSERT INTO t VALUES ('never')")
            assert db.read("PRAGMA busy_timeout")[0][0] == 30000  # waiting writes wait again
    finally:
        holder.execute("ROLLBACK")
    with db.nowait(), db.write() as conn:  # the lock is free: it writes
        conn.execute("INSERT INTO t VALUES ('now')")
    assert rows(db) == ["now"]


def test_nowait_is_the_calling_threads_only(db: Database, tmp_path: Path) -> None:
    """Another thread's writes still wait for the lock while this one is in a nowait block."""
    holder = sqlite3.connect(str(tmp_path / "state.db"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    done: list[str] = []

    def waiting_writer() -> None:
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES ('waited')")
        done.append("ok")

    with db.nowait():
        writer = threading.Thread(target=waiting_writer)
        writer.start()
        writer.join(0.3)
        assert writer.is_alive()  # it waits, it did not raise
        holder.execute("ROLLBACK")
        writer.join(10)
    assert done == ["ok"] and rows(db) == ["waited"]


def test_a_writer_waits_for_the_lock_and_gives_up_after_the_busy_timeout(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Database._begin` retries the write lock itself (SQLite's own busy handler sleeps up to
    100 ms at a time): it gets the lock once it is free, and after the busy timeout it fails as
    SQLite does ("database is locked"); reads keep SQLite's busy timeout."""
    from cogplane.adapters.local import sqlite as module

    holder = sqlite3.connect(str(tmp_path / "state.db"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.2, holder.execute, args=("ROLLBACK",)).start()
    with db.write() as conn:  # waits through the 0.2 s
        conn.execute("INSERT INTO t VALUES ('waited')")
    assert rows(db) == ["waited"]
    assert db.read("PRAGMA busy_timeout")[0][0] == module.BUSY_TIMEOUT_MS

    monkeypatch.setattr(module, "BUSY_TIMEOUT_S", 0.05)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"), db.write() as conn:
            conn.execute("INSERT INTO t VALUES ('never')")
    finally:
        holder.execute("ROLLBACK")
    assert rows(db) == ["waited"]
    assert db.read("PRAGMA busy_timeout")[0][0] == module.BUSY_TIMEOUT_MS


def test_after_commit_runs_once_the_outermost_transaction_commits(db: Database) -> None:
    ran: list[str] = []
    db.after_commit(lambda: ran.append("outside"))  # no transaction: at once
    with db.write():
        with db.write():
            db.after_commit(lambda: ran.append("inner"))
        assert ran == ["outside"]  # the inner block ended, nothing is committed yet
        with pytest.raises(ValueError), db.write():
            db.after_commit(lambda: ran.append("undone"))
            raise ValueError("its writes and its callbacks go")
    assert ran == ["outside", "inner"]
    with pytest.raises(ValueError), db.write():
        db.after_commit(lambda: ran.append("rolled back"))
        raise ValueError
    assert ran == ["outside", "inner"]


def test_an_end_written_inside_a_larger_transaction_is_announced_after_its_commit(tmp_path: Path) -> None:
    """The completion notice (a woken API reads the prediction) must not go before the commit."""
    from cogplane.adapters.local.sqlite import SqliteStateStore
    from cogplane.clock import SystemClock
    from cogplane.domain.entities import Prediction

    db = Database(str(tmp_path / "state.db"))
    state = SqliteStateStore(db, SystemClock())
    announced: list[str] = []
    state.completions.ended = announced.append  # type: ignore[method-assign]
    state.create_prediction(
        Prediction(id="p1", owner="a", model="a/m", version="v", input={}, created_at="2026-11-30T00:00:00.000000Z")
    )
    with db.write():
        state.update_prediction("p1", {"status": "canceled"})
        assert announced == []
    assert announced == ["p1"]


def test_busy_is_recognised_by_its_primary_code() -> None:
    from cogplane.adapters.local.sqlite import _busy

    def error(code: int | None, message: str = "x") -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError(message)
        if code is not None:
            exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        return exc

    assert _busy(error(sqlite3.SQLITE_BUSY)) and _busy(error(sqlite3.SQLITE_LOCKED))
    assert _busy(error(sqlite3.SQLITE_BUSY | (2 << 8)))  # SQLITE_BUSY_SNAPSHOT
    assert not _busy(error(1)) and not _busy(error(10))  # SQLITE_ERROR, SQLITE_IOERR
    assert _busy(error(None, "database is locked")) and not _busy(error(None, "no such table: t"))
