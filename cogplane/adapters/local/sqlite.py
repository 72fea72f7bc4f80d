"""SQLite adapters: state, job queue and outbox in one database file (WAL, several processes).

Every write runs in a `BEGIN IMMEDIATE` transaction; conditions are checked inside it, so two
processes can never both move a prediction out of a state or claim the same job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cogplane.adapters import cursor as cursors
from cogplane.adapters.local.completions import CompletionNotifier, notify_dir
from cogplane.clock import epoch
from cogplane.domain.entities import (
    Account,
    ApiToken,
    Deployment,
    File,
    Job,
    Membership,
    Model,
    OutboxEvent,
    Page,
    Prediction,
    Runner,
    UsageRecord,
    Version,
)
from cogplane.domain.errors import Conflict, NotFound
from cogplane.domain.lifecycle import derive
from cogplane.domain.ratelimit import RateDecision, take
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import iso
from cogplane.domain.usage import billable
from cogplane.ports import WouldBlock

if TYPE_CHECKING:
    from cogplane.ports import Clock

log = logging.getLogger("cogplane.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (username TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
  owner TEXT NOT NULL, name TEXT NOT NULL, visibility TEXT NOT NULL, created_at TEXT NOT NULL,
  latest_version_created_at TEXT, data TEXT NOT NULL, PRIMARY KEY (owner, name));
CREATE INDEX IF NOT EXISTS models_by_created ON models (visibility, created_at, owner, name);
CREATE INDEX IF NOT EXISTS models_by_latest ON models (visibility, latest_version_created_at, owner, name);
CREATE TABLE IF NOT EXISTS versions (
  owner TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL, created_at TEXT NOT NULL,
  data TEXT NOT NULL, PRIMARY KEY (owner, name, id));
CREATE INDEX IF NOT EXISTS versions_by_id ON versions (id);
CREATE INDEX IF NOT EXISTS versions_by_model ON versions (owner, name, created_at, id);
CREATE TABLE IF NOT EXISTS predictions (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at TEXT NOT NULL, status TEXT NOT NULL,
  data TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'prediction');
CREATE INDEX IF NOT EXISTS predictions_by_status ON predictions (status);
CREATE TABLE IF NOT EXISTS deployments (
  owner TEXT NOT NULL, name TEXT NOT NULL, release_number INTEGER NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (owner, name));
CREATE INDEX IF NOT EXISTS deployments_warm ON deployments (owner, name)
  WHERE json_extract(data, '$.min_instances') > 0;
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, pool TEXT NOT NULL, prediction_id TEXT NOT NULL,
  visible_at REAL NOT NULL, receipt TEXT, attempts INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_pool ON jobs (pool, visible_at, seq);
CREATE TABLE IF NOT EXISTS runners (id TEXT PRIMARY KEY, pool TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runners_by_pool ON runners (pool);
CREATE TABLE IF NOT EXISTS files (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_owner ON files (owner, created_at, id);
CREATE TABLE IF NOT EXISTS outbox (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, due_at TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox (kind, due_at, id);
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, account TEXT NOT NULL, created_at TEXT NOT NULL,
  data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS api_tokens_by_account ON api_tokens (account, created_at, id);
CREATE TABLE IF NOT EXISTS members (
  org TEXT NOT NULL, username TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (org, username));
CREATE INDEX IF NOT EXISTS members_by_user ON members (username, org);
CREATE TABLE IF NOT EXISTS usage (
  account TEXT NOT NULL, day TEXT NOT NULL, hardware TEXT NOT NULL, predict_time REAL NOT NULL,
  predictions INTEGER NOT NULL, PRIMARY KEY (account, day, hardware));
CREATE TABLE IF NOT EXISTS rate_buckets (key TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL);
"""

# Installs made before named tokens kept bare hashes in `tokens`: move them over once.
_MIGRATE_TOKENS = """
INSERT OR IGNORE INTO api_tokens (id, token_hash, account, created_at, data)
  SELECT 'tok_' || substr(token_hash, 1, 20), token_hash, username, created_at,
         json_object('id', 'tok_' || substr(token_hash, 1, 20), 'account', username, 'name', 'default',
                     'token_hash', token_hash, 'created_at', created_at, 'last_used_at', NULL)
  FROM tokens;
DELETE FROM tokens;
"""


BUSY_TIMEOUT_MS = 30000  # how long a statement may wait for a lock (reads: only in rare cases in WAL)
BUSY_TIMEOUT_S = BUSY_TIMEOUT_MS / 1000
BUSY_FIRST_S = 0.0001  # Database._begin: the first wait for the write lock, doubling ...
BUSY_MAX_S = 0.001  # ... to at most this


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...) included."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised without a code: SQLite's message says it
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Database:
    """One SQLite file shared by the adapters; a connection per thread (and per process)."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self.synchronous = synchronous
        if self.path != ":memory:":
            from cogplane.homedir import HOME_MODE, create_private

            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=HOME_MODE, exist_ok=True)
            create_private(self.path)  # 0600 from the start; SQLite gives -wal/-shm the same mode
        self._local = threading.local()
        self._pid = os.getpid()
        conn = self.connection()
        conn.executescript(_SCHEMA)
        if conn.execute("SELECT 1 FROM tokens LIMIT 1").fetchone():
            conn.executescript("BEGIN IMMEDIATE;" + _MIGRATE_TOKENS + "COMMIT;")
        _migrate(conn)

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._pid != os.getpid():
            self._pid = os.getpid()
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL: durable across process crashes in WAL mode (OFF: only for throw-away state)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. Nested in another on the same thread, it joins that one (as a
        savepoint: its own failure undoes its own writes only), so `write()` also makes several
        adapters' writes one transaction: the prediction and its job (`PredictionService.create`).
        What must happen only once the writes are committed is `after_commit`'s."""
        conn = self.connection()
        depth = getattr(self._local, "depth", 0)
        if depth:
            savepoint = f"w{depth}"
            mark = len(self._local.after)
            conn.execute(f"SAVEPOINT {savepoint}")
            self._local.depth = depth + 1
            try:
                yield conn
            except BaseException:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
                del self._local.after[mark:]  # its own callbacks go with its writes
                raise
            else:
                conn.execute(f"RELEASE {savepoint}")
            finally:
                self._local.depth = depth
            return
        self._begin(conn)
        self._local.depth = 1
        self._local.after = []
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self._local.depth = 0
            after, self._local.after = self._local.after, []
        for callback in after:  # committed (an exception above skips them)
            try:
                callback()
            except Exception:  # noqa: BLE001 - a notice's failure must not undo a committed write
                log.exception("after a commit to %s", self.path)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this thread's transaction commits (at once outside one); never if
        it rolls back. A write nested in another is not committed when its block ends."""
        if getattr(self._local, "depth", 0):
            self._local.after.append(callback)
        else:
            callback()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """Take the write lock (`BEGIN IMMEDIATE`). Not with SQLite's own busy handler: a writer
        that finds the lock taken sleeps 1, 2, 5, 10, ... then 100 ms at a time there, so under
        several writers (the API, 8 runners) an unlucky one waited hundreds of ms while others
        took the lock again and again (part of the load section's 1.3 s p99 with 8 runners). Here
        it retries after 0.1 ms, doubling to at most 1 ms, for up to `busy_timeout` in all (then
        SQLite's "database is locked", as before). In a `nowait` block it does not wait at all."""
        conn.execute("PRAGMA busy_timeout=0")
        try:
            if getattr(self._local, "nowait", False):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if _busy(exc):
                        raise WouldBlock("another process holds the write lock") from exc
                    raise
                return
            delay, deadline = BUSY_FIRST_S, None
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _busy(exc):
                        raise
                    now = time.monotonic()
                    deadline = deadline or now + BUSY_TIMEOUT_S
                    if now >= deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, BUSY_MAX_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @contextmanager
    def nowait(self) -> Iterator[None]:
        """In this block, a write of this thread that would wait for the write lock (held by a
        runner, say) raises WouldBlock instead, before writing anything: the event loop writes
        only while nobody else does, and hands the work to a thread otherwise. Its connection never
        checkpoints the WAL either (a checkpoint syncs the file: milliseconds); others do."""
        conn = self.connection()
        if not getattr(self._local, "no_checkpoints", False):
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.no_checkpoints = True
        was = getattr(self._local, "nowait", False)
        self._local.nowait = True
        try:
            yield
        finally:
            self._local.nowait = was

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an older cogplane up to _SCHEMA (state survives upgrades)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
    if "kind" not in columns:  # trainings list apart from predictions
        try:
            conn.execute("ALTER TABLE predictions ADD COLUMN kind TEXT NOT NULL DEFAULT 'prediction'")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise
    conn.execute("DROP INDEX IF EXISTS predictions_by_owner")
    conn.execute("CREATE INDEX IF NOT EXISTS predictions_by_owner_kind ON predictions (owner, kind, created_at, id)")


def _now() -> str:
    """Wall time for webhook throttling (the outbox's due times are compared with it)."""
    return iso(datetime.now(UTC))


def _insert_outbox(conn: sqlite3.Connection, events: Sequence[OutboxEvent]) -> None:
    for event in events:
        conn.execute(
            "INSERT INTO outbox (id, kind, due_at, data) VALUES (?, ?, ?, ?)",
            (event.id, event.kind, event.due_at, _dumps(event.to_dict())),
        )


def _newest_first(db: Database, cls: type[Any], sql: str, params: list[Any], cursor: str | None, limit: int) -> Page:
    """A keyset page, newest first, over a query whose rows have `data`, `created_at` and `id`
    (the WHERE clause is in `sql`; an index on (..., created_at, id) serves it)."""
    if cursor:
        pos = cursors.decode(cursor, ("c", "i"))
        sql += " AND (created_at, id) < (?, ?)"
        params = [*params, pos["c"], pos["i"]]
    rows = db.read(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit + 1])
    items = [cls.from_dict(json.loads(r["data"])) for r in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = cursors.encode({"c": last["created_at"], "i": last["id"]})
    return Page(items=items, next_cursor=nxt)


class SqliteStateStore:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.completions = CompletionNotifier(notify_dir(db.path))
        self.db = db
        self.clock = clock  # times the derived outbox events (webhook throttling); wall time if None

    def _now(self) -> str:
        return self.clock.now() if self.clock is not None else _now()

    # --- accounts and tokens --------------------------------------------------------------
    def create_account(self, account: Account) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO accounts (username, data) VALUES (?, ?)",
                (account.username, _dumps(account.to_dict())),
            )
            return cur.rowcount == 1

    def get_account(self, username: str) -> Account | None:
        rows = self.db.read("SELECT data FROM accounts WHERE username = ?", (username,))
        return Account.from_dict(json.loads(rows[0]["data"])) if rows else None

    def update_account(self, account: Account) -> None:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE accounts SET data = ? WHERE username = ?", (_dumps(account.to_dict()), account.username)
            )
            if cur.rowcount == 0:
                raise NotFound(f"Account {account.username} not found.")

    def list_accounts(self, *, cursor: str | None = None, limit: int = 100) -> Page[Account]:
        sql, params = "SELECT data, username FROM accounts", []
        if cursor:
            sql += " WHERE username > ?"
            params.append(cursors.decode(cursor, ("u",))["u"])
        rows = self.db.read(sql + " ORDER BY username LIMIT ?", [*params, limit + 1])
        items = [Account.from_dict(json.loads(r["data"])) for r in rows[:limit]]
        nxt = cursors.encode({"u": rows[limit - 1]["username"]}) if len(rows) > limit else None
        return Page(items=items, next_cursor=nxt)

    def put_token(self, token: ApiToken) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO api_tokens (id, token_hash, account, created_at, data) VALUES (?, ?, ?, ?, ?)",
                (token.id, token.token_hash, token.account, token.created_at, _dumps(token.to_dict())),
            )
            return cur.rowcount == 1

    def get_token(self, token_hash: str) -> ApiToken | None:
        rows = self.db.read("SELECT data FROM api_tokens WHERE token_hash = ?", (token_hash,))
        return ApiToken.from_dict(json.loads(rows[0]["data"])) if rows else None

    def list_tokens(self, account: str) -> list[ApiToken]:
        rows = self.db.read("SELECT data FROM api_tokens WHERE account = ? ORDER BY created_at, id", (account,))
        return [ApiToken.from_dict(json.loads(r["data"])) for r in rows]

    def touch_token(self, token_hash: str, used_at: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE api_tokens SET data = json_set(data, '$.last_used_at', ?) WHERE token_hash = ?"
                " AND (json_extract(data, '$.last_used_at') IS NULL OR json_extract(data, '$.last_used_at') < ?)",
                (used_at, token_hash, used_at),
            )

    def delete_token(self, token_id: str) -> ApiToken | None:
        with self.db.write() as conn:
            row = conn.execute("DELETE FROM api_tokens WHERE id = ? RETURNING data", (token_id,)).fetchone()
        return ApiToken.from_dict(json.loads(row["data"])) if row else None

    # --- organization members -----------------------------------------------------------
    def put_member(self, membership: Membership) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO members (org, username, data) VALUES (?, ?, ?)",
                (membership.org, membership.username, _dumps(membership.to_dict())),
            )

    def get_member(self, org: str, username: str) -> Membership | None:
        rows = self.db.read("SELECT data FROM members WHERE org = ? AND username = ?", (org, username))
        return Membership.from_dict(json.loads(rows[0]["data"])) if rows else None

    def delete_member(self, org: str, username: str) -> bool:
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM members WHERE org = ? AND username = ?", (org, username))
            return cur.rowcount == 1

    def list_members(self, org: str) -> list[Membership]:
        rows = self.db.read("SELECT data FROM members WHERE org = ? ORDER BY username", (org,))
        return [Membership.from_dict(json.loads(r["data"])) for r in rows]

    def list_memberships(self, username: str) -> list[Membership]:
        rows = self.db.read("SELECT data FROM members WHERE username = ? ORDER BY org", (username,))
        return [Membership.from_dict(json.loads(r["data"])) for r in rows]

    # --- usage --------------------------------------------------------------------------
    def list_usage(self, account: str, *, since: str, until: str) -> list[UsageRecord]:
        rows = self.db.read(
            "SELECT account, day, hardware, predict_time, predictions FROM usage"
            " WHERE account = ? AND day >= ? AND day <= ? ORDER BY day, hardware",
            (account, since, until),
        )
        return [
            UsageRecord(
                account=r["account"],
                day=r["day"],
                hardware=r["hardware"],
                predict_time=r["predict_time"],
                predictions=r["predictions"],
            )
            for r in rows
        ]

    # --- models -------------------------------------------------------------------------
    def create_model(self, model: Model) -> None:
        with self.db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO models (owner, name, visibility, created_at, latest_version_created_at, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        model.owner,
                        model.name,
                        model.visibility,
                        model.created_at,
                        model.latest_version_created_at,
                        _dumps(model.to_dict()),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"A model named {model.owner}/{model.name} already exists.") from exc

    def get_model(self, owner: str, name: str) -> Model | None:
        rows = self.db.read("SELECT data FROM models WHERE owner = ? AND name = ?", (owner, name))
        return Model.from_dict(json.loads(rows[0]["data"])) if rows else None

    def update_model(self, model: Model) -> None:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE models SET visibility = ?, latest_version_created_at = ?, data = ?"
                " WHERE owner = ? AND name = ?",
                (model.visibility, model.latest_version_created_at, _dumps(model.to_dict()), model.owner, model.name),
            )
            if cur.rowcount == 0:
                raise NotFound(f"Model {model.owner}/{model.name} not found.")

    def delete_model(self, owner: str, name: str) -> None:
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM models WHERE owner = ? AND name = ?", (owner, name))
            if cur.rowcount == 0:
                raise NotFound(f"Model {owner}/{name} not found.")

    def list_models_of(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[Model]:
        sql, params = "SELECT data, name FROM models WHERE owner = ?", [owner]
        if cursor:
            sql += " AND name > ?"
            params.append(cursors.decode(cursor, ("n",))["n"])
        rows = self.db.read(sql + " ORDER BY name LIMIT ?", [*params, limit + 1])
        items = [Model.from_dict(json.loads(r["data"])) for r in rows[:limit]]
        nxt = cursors.encode({"n": rows[limit - 1]["name"]}) if len(rows) > limit else None
        return Page(items=items, next_cursor=nxt)

    def list_models(
        self,
        *,
        sort_by: str = "latest_version_created_at",
        descending: bool = True,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Model]:
        column = "created_at" if sort_by == "model_created_at" else "latest_version_created_at"
        op, order = ("<", "DESC") if descending else (">", "ASC")
        sql = f"SELECT data, {column} AS k, owner, name FROM models WHERE visibility = 'public'"  # noqa: S608 - column: one of two names above
        params: list[Any] = []
        if column == "latest_version_created_at":
            sql += " AND latest_version_created_at IS NOT NULL"
        if cursor:
            pos = cursors.decode(cursor, ("k", "o", "n"))
            sql += f" AND ({column}, owner, name) {op} (?, ?, ?)"
            params += [pos["k"], pos["o"], pos["n"]]
        sql += f" ORDER BY {column} {order}, owner {order}, name {order} LIMIT ?"
        params.append(limit + 1)
        rows = self.db.read(sql, params)
        items = [Model.from_dict(json.loads(r["data"])) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = cursors.encode({"k": last["k"], "o": last["owner"], "n": last["name"]})
        return Page(items=items, next_cursor=nxt)

    # --- versions -----------------------------------------------------------------------
    def put_version(self, version: Version) -> tuple[Version, bool]:
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO versions (owner, name, id, created_at, data) VALUES (?, ?, ?, ?, ?)",
                (version.owner, version.name, version.id, version.created_at, _dumps(version.to_dict())),
            )
            if cur.rowcount == 1:
                return version, True
            row = conn.execute(
                "SELECT data FROM versions WHERE owner = ? AND name = ? AND id = ?",
                (version.owner, version.name, version.id),
            ).fetchone()
            return Version.from_dict(json.loads(row["data"])), False

    def get_version(self, owner: str, name: str, version_id: str) -> Version | None:
        rows = self.db.read(
            "SELECT data FROM versions WHERE owner = ? AND name = ? AND id = ?", (owner, name, version_id)
        )
        return Version.from_dict(json.loads(rows[0]["data"])) if rows else None

    def find_versions(self, version_id: str) -> list[Version]:
        rows = self.db.read("SELECT data FROM versions WHERE id = ? LIMIT 100", (version_id,))
        return [Version.from_dict(json.loads(r["data"])) for r in rows]

    def list_versions(self, owner: str, name: str, *, cursor: str | None = None, limit: int = 100) -> Page[Version]:
        return _newest_first(
            self.db,
            Version,
            "SELECT data, created_at, id FROM versions WHERE owner = ? AND name = ?",
            [owner, name],
            cursor,
            limit,
        )

    def delete_version(self, owner: str, name: str, version_id: str) -> None:
        with self.db.write() as conn:
            cur = conn.execute(
                "DELETE FROM versions WHERE owner = ? AND name = ? AND id = ?", (owner, name, version_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"Version {version_id} of {owner}/{name} not found.")

    # --- predictions --------------------------------------------------------------------
    def create_prediction(self, prediction: Prediction, outbox: Sequence[OutboxEvent] = ()) -> None:
        with self.db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO predictions (id, owner, created_at, status, data, kind) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        prediction.id,
                        prediction.owner,
                        prediction.created_at,
                        prediction.status,
                        _dumps(prediction.to_dict()),
                        prediction.kind,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"Prediction {prediction.id} already exists.") from exc
            owner, _, name = prediction.model.partition("/")
            conn.execute(  # the model's run_count, in the same transaction
                "UPDATE models SET data = json_set(data, '$.run_count',"
                " COALESCE(json_extract(data, '$.run_count'), 0) + 1) WHERE owner = ? AND name = ?",
                (owner, name),
            )
            _insert_outbox(conn, [*outbox, *derive(None, prediction, self._now())])

    def get_prediction(self, prediction_id: str) -> Prediction | None:
        rows = self.db.read("SELECT data FROM predictions WHERE id = ?", (prediction_id,))
        return Prediction.from_dict(json.loads(rows[0]["data"])) if rows else None

    def update_prediction(
        self,
        prediction_id: str,
        changes: dict[str, Any],
        *,
        expect_status: Iterable[str] | None = None,
        outbox: Sequence[OutboxEvent] = (),
    ) -> Prediction:
        allowed = (
            {str(s) for s in expect_status}
            if expect_status is not None
            else {str(s) for s in Status} - {str(s) for s in TERMINAL}
        )
        with self.db.write() as conn:
            row = conn.execute("SELECT data, status FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
            if row is None:
                raise NotFound(f"Prediction {prediction_id} not found.")
            if row["status"] not in allowed:
                raise Conflict(f"Prediction {prediction_id} is {row['status']}.")
            data = json.loads(row["data"])
            before = Prediction.from_dict(dict(data))
            data.update(changes)
            updated = Prediction.from_dict(data)
            events = derive(before, updated, self._now())
            conn.execute(
                "UPDATE predictions SET status = ?, data = ? WHERE id = ?",
                (updated.status, _dumps(updated.to_dict()), prediction_id),
            )
            _insert_outbox(conn, [*outbox, *events])
            delta = billable(before, updated)
            if delta is not None:
                conn.execute(
                    "INSERT INTO usage (account, day, hardware, predict_time, predictions) VALUES (?, ?, ?, ?, 1)"
                    " ON CONFLICT (account, day, hardware) DO UPDATE SET"
                    " predict_time = predict_time + excluded.predict_time, predictions = predictions + 1",
                    (delta.account, delta.day, delta.hardware, delta.predict_time),
                )
        if updated.status in TERMINAL and before.status not in TERMINAL:
            # after the commit (of an enclosing transaction too): a woken waiter reads it
            self.db.after_commit(lambda: self.completions.ended(prediction_id))
        return updated

    def list_predictions(
        self,
        owner: str,
        *,
        created_after: str | None = None,
        created_before: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        kind: str = "prediction",
    ) -> Page[Prediction]:
        sql = "SELECT data, created_at, id FROM predictions WHERE owner = ? AND kind = ?"
        params: list[Any] = [owner, kind]
        if created_after:
            sql += " AND created_at > ?"
            params.append(created_after)
        if created_before:
            sql += " AND created_at < ?"
            params.append(created_before)
        return _newest_first(self.db, Prediction, sql, params, cursor, limit)

    def delete_prediction(self, prediction_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM predictions WHERE id = ?", (prediction_id,))

    # --- deployments --------------------------------------------------------------------
    def create_deployment(self, deployment: Deployment) -> None:
        with self.db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO deployments (owner, name, release_number, data) VALUES (?, ?, ?, ?)",
                    (deployment.owner, deployment.name, deployment.release_number, _dumps(deployment.to_dict())),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"A deployment named {deployment.owner}/{deployment.name} already exists.") from exc

    def get_deployment(self, owner: str, name: str) -> Deployment | None:
        rows = self.db.read("SELECT data FROM deployments WHERE owner = ? AND name = ?", (owner, name))
        return Deployment.from_dict(json.loads(rows[0]["data"])) if rows else None

    def update_deployment(self, deployment: Deployment, *, expect_release: int) -> None:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE deployments SET release_number = ?, data = ?"
                " WHERE owner = ? AND name = ? AND release_number = ?",
                (
                    deployment.release_number,
                    _dumps(deployment.to_dict()),
                    deployment.owner,
                    deployment.name,
                    expect_release,
                ),
            )
            if cur.rowcount == 0:
                raise Conflict(f"Deployment {deployment.owner}/{deployment.name} changed meanwhile; retry.")

    def delete_deployment(self, owner: str, name: str) -> None:
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM deployments WHERE owner = ? AND name = ?", (owner, name))
            if cur.rowcount == 0:
                raise NotFound(f"Deployment {owner}/{name} not found.")

    def list_deployments(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[Deployment]:
        sql = "SELECT data, name FROM deployments WHERE owner = ?"
        params: list[Any] = [owner]
        if cursor:
            sql += " AND name > ?"
            params.append(cursors.decode(cursor, ("n",))["n"])
        sql += " ORDER BY name LIMIT ?"
        params.append(limit + 1)
        rows = self.db.read(sql, params)
        items = [Deployment.from_dict(json.loads(r["data"])) for r in rows[:limit]]
        nxt = cursors.encode({"n": rows[limit - 1]["name"]}) if len(rows) > limit else None
        return Page(items=items, next_cursor=nxt)

    def list_warm_deployments(self, limit: int = 100) -> list[Deployment]:
        # the partial index deployments_warm holds only deployments with min_instances > 0
        rows = self.db.read(
            "SELECT data FROM deployments WHERE json_extract(data, '$.min_instances') > 0 ORDER BY owner, name LIMIT ?",
            (max(0, int(limit)),),
        )
        return [Deployment.from_dict(json.loads(r["data"])) for r in rows]

    # --- files --------------------------------------------------------------------------
    def create_file(self, file: File) -> None:
        with self.db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO files (id, owner, created_at, data) VALUES (?, ?, ?, ?)",
                    (file.id, file.owner, file.created_at, _dumps(file.to_dict())),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"File {file.id} already exists.") from exc

    def get_file(self, file_id: str) -> File | None:
        rows = self.db.read("SELECT data FROM files WHERE id = ?", (file_id,))
        return File.from_dict(json.loads(rows[0]["data"])) if rows else None

    def list_files(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[File]:
        return _newest_first(
            self.db, File, "SELECT data, created_at, id FROM files WHERE owner = ?", [owner], cursor, limit
        )

    def delete_file(self, file_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    # --- runners ------------------------------------------------------------------------
    def put_runner(self, runner: Runner) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO runners (id, pool, data) VALUES (?, ?, ?)",
                (runner.id, runner.pool, _dumps(runner.to_dict())),
            )

    def get_runner(self, runner_id: str) -> Runner | None:
        rows = self.db.read("SELECT data FROM runners WHERE id = ?", (runner_id,))
        return Runner.from_dict(json.loads(rows[0]["data"])) if rows else None

    def list_runners(self, pool: str | None = None) -> list[Runner]:
        if pool is None:
            rows = self.db.read("SELECT data FROM runners ORDER BY id")
        else:
            rows = self.db.read("SELECT data FROM runners WHERE pool = ? ORDER BY id", (pool,))
        return [Runner.from_dict(json.loads(r["data"])) for r in rows]

    def delete_runner(self, runner_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM runners WHERE id = ?", (runner_id,))


class SqliteJobQueue:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def enqueue(self, job: Job) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO jobs (pool, prediction_id, visible_at, data) VALUES (?, ?, ?, ?)",
                (job.pool, job.prediction_id, epoch(self.clock), _dumps(job.to_dict())),
            )

    def claim(self, pool: str, *, lease_seconds: float = 60.0) -> Job | None:
        now = epoch(self.clock)
        # An idle runner polls: look first (a read never waits on the write lock nor takes it)
        if not self.db.read("SELECT 1 FROM jobs WHERE pool = ? AND visible_at <= ? LIMIT 1", (pool, now)):
            return None
        receipt = uuid.uuid4().hex
        with self.db.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET receipt = ?, visible_at = ?, attempts = attempts + 1 WHERE seq = ("
                " SELECT seq FROM jobs WHERE pool = ? AND visible_at <= ? ORDER BY seq LIMIT 1)"
                " RETURNING seq, data, attempts",
                (receipt, now + lease_seconds, pool, now),
            ).fetchone()
        if row is None:
            return None
        job = Job.from_dict(json.loads(row["data"]))
        job.receipt = f"{row['seq']}:{receipt}"
        job.attempts = row["attempts"]
        return job

    def _split(self, job: Job) -> tuple[int, str]:
        seq, _, receipt = (job.receipt or "").partition(":")
        return int(seq or 0), receipt

    def ack(self, job: Job) -> None:
        seq, receipt = self._split(job)
        with self.db.write() as conn:
            conn.execute("DELETE FROM jobs WHERE seq = ? AND receipt = ?", (seq, receipt))

    def release(self, job: Job, *, delay: float = 0.0) -> None:
        seq, receipt = self._split(job)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE jobs SET visible_at = ? WHERE seq = ? AND receipt = ?",
                (epoch(self.clock) + delay, seq, receipt),
            )

    def depth(self, pool: str) -> int:
        rows = self.db.read(
            "SELECT COUNT(*) AS n FROM jobs WHERE pool = ? AND visible_at <= ?", (pool, epoch(self.clock))
        )
        return int(rows[0]["n"])


class SqliteOutbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, events: Sequence[OutboxEvent]) -> None:
        with self.db.write() as conn:
            _insert_outbox(conn, events)

    def due(self, now: str, *, kind: str, limit: int = 100) -> list[OutboxEvent]:
        rows = self.db.read(
            "SELECT data, due_at FROM outbox WHERE kind = ? AND due_at <= ? ORDER BY due_at, id LIMIT ?",
            (kind, now, limit),
        )
        events = []
        for r in rows:
            event = OutboxEvent.from_dict(json.loads(r["data"]))
            event.due_at = r["due_at"]
            events.append(event)
        return events

    def complete(self, event_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (event_id,))

    def reschedule(self, event_id: str, *, due_at: str, attempts: int) -> None:
        with self.db.write() as conn:
            row = conn.execute("SELECT data FROM outbox WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                return
            data = json.loads(row["data"])
            data.update(due_at=due_at, attempts=attempts)
            conn.execute("UPDATE outbox SET due_at = ?, data = ? WHERE id = ?", (due_at, _dumps(data), event_id))


class SqliteRateLimiter:
    """Token buckets in a shared database: every API worker process takes from the same bucket,
    one `BEGIN IMMEDIATE` transaction per request."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def own_file(cls, path: str | Path) -> SqliteRateLimiter:
        """Buckets in a file of their own, written without syncs (`synchronous=OFF`): every
        authenticated request writes its bucket, and in the state's file with its NORMAL syncs
        that write took 0.3-1 ms of wall time on a busy disk (checkpoint fsyncs, and the state's
        write lock shared with the runners); here about 40 µs. Buckets are worth nothing after a
        crash: a file the OS left damaged is replaced by an empty one (full buckets)."""
        try:
            limiter = cls(Database(path, synchronous="OFF"))
            # a sound header and schema can hide a damaged page: every bucket write would fail
            if [tuple(r) for r in limiter.db.read("PRAGMA quick_check")] == [("ok",)]:
                return limiter
            limiter.db.connection().close()
        except sqlite3.OperationalError:  # busy or unreadable: not proof of damage, not ours to delete
            raise
        except sqlite3.DatabaseError:
            pass
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(path) + suffix)
        return cls(Database(path, synchronous="OFF"))

    def take(self, key: str, *, per_minute: int, now: float) -> RateDecision:
        try:
            with self.db.write() as conn:
                row = conn.execute("SELECT tokens, updated FROM rate_buckets WHERE key = ?", (key,)).fetchone()
                tokens, updated = (row["tokens"], row["updated"]) if row else (None, None)
                level, decision = take(tokens, updated, now, per_minute)
                conn.execute(
                    "INSERT OR REPLACE INTO rate_buckets (key, tokens, updated) VALUES (?, ?, ?)",
                    (key, level, max(now, row["updated"]) if row else now),
                )
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError:  # damaged while running: let the request through (a full bucket)
            log.warning("rate buckets in %s are damaged; not limiting until the next start", self.db.path)
            return take(None, None, now, per_minute)[1]
        return decision
