"""DynamoDB adapters: StateStore and Outbox on one table (layout: cogplane.resources).

Entities are stored as JSON in the `data` attribute (no float/Decimal conversions), next to the
key and index attributes and the few attributes that conditions need (`status`, `rev`,
`release_number`, `due_at`, `attempts`). Both adapters take a low-level boto3 DynamoDB client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from cogplane import resources as r
from cogplane.adapters import cursor as cursors
from cogplane.domain.entities import (
    Account,
    ApiToken,
    Deployment,
    File,
    Membership,
    Model,
    OutboxEvent,
    Page,
    Prediction,
    Runner,
    UsageRecord,
    Version,
)
from cogplane.domain.errors import Conflict, InvalidRequest, NotFound
from cogplane.domain.lifecycle import derive
from cogplane.domain.ratelimit import RateDecision, take
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import iso
from cogplane.domain.usage import billable

_NON_TERMINAL = frozenset(str(s) for s in Status) - frozenset(str(s) for s in TERMINAL)
_UPDATE_RETRIES = 20  # optimistic-concurrency retries when another writer changed a prediction
_MAX_TRANSACTION_ITEMS = 100
_PUBLIC_MODELS = "PUBLIC_MODELS"
_PUBLIC_MODELS_BY_LATEST = "PUBLIC_MODELS_BY_LATEST"
_OUTBOX_PARTITION = "OUTBOX"
_RUNNERS_PARTITION = "RUNNERS"
_WARM_DEPLOYMENTS = "WARM_DEPLOYMENTS"


# --- item helpers ---------------------------------------------------------------------------


def _now() -> str:
    """Wall time for webhook throttling (the outbox's due times are compared with it)."""
    return iso(datetime.now(UTC))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _item_size(item: dict[str, dict[str, Any]]) -> int:
    """DynamoDB's item size: attribute names plus values (UTF-8 bytes; numbers ~ digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode("utf-8"))
        if "S" in value:
            size += len(value["S"].encode("utf-8"))
        elif "N" in value:
            size += len(value["N"]) // 2 + 1
    return size


def _check_size(item: dict[str, dict[str, Any]], what: str) -> None:
    size = _item_size(item)
    if size > r.MAX_ITEM_BYTES - r.ITEM_SIZE_MARGIN:
        raise InvalidRequest(
            f"{what} is too large to store ({size} bytes; the limit is about "
            f"{(r.MAX_ITEM_BYTES - r.ITEM_SIZE_MARGIN) // 1024} KB); pass large values as files."
        )


def _data(item: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return json.loads(item[r.DATA]["S"])


def _model_sort(ts: str, owner: str, name: str) -> str:
    return f"{ts}#{owner} {name}"


def _account_key(username: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"ACCOUNT#{username}"), r.SK: _s("ACCOUNT")}


def _token_key(token_hash: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"TOKEN#{token_hash}"), r.SK: _s("TOKEN")}


_ACCOUNTS = "ACCOUNTS"
_LAST_USED = "last_used_at"  # tokens: a plain attribute, so touching one is a conditional SET
_PREDICT_TIME = "predict_time"  # usage rows: ADDed atomically
_PREDICTIONS = "predictions"


def _account_item(account: Account) -> dict[str, dict[str, Any]]:
    return {
        **_account_key(account.username),
        r.GSI1_PK: _s(_ACCOUNTS),
        r.GSI1_SK: _s(account.username),
        r.DATA: _s(_dumps(account.to_dict())),
    }


def _token_item(token: ApiToken) -> dict[str, dict[str, Any]]:
    data = token.to_dict()
    used = data.pop("last_used_at", None)
    item = {
        **_token_key(token.token_hash),
        r.GSI1_PK: _s(f"TOKENS#{token.account}"),
        r.GSI1_SK: _s(f"{token.created_at}#{token.id}"),
        r.GSI2_PK: _s(f"TOKENID#{token.id}"),
        r.GSI2_SK: _s("TOKEN"),
        r.DATA: _s(_dumps(data)),
    }
    if used:
        item[_LAST_USED] = _s(used)
    return item


def _token(item: dict[str, dict[str, Any]]) -> ApiToken:
    data = _data(item)
    if "id" not in data:  # written before tokens had names: {token_hash, username, created_at}
        data = {
            "id": "tok_" + data["token_hash"][:20],
            "account": data["username"],
            "name": "default",
            "token_hash": data["token_hash"],
            "created_at": data["created_at"],
        }
    token = ApiToken.from_dict(data)
    token.last_used_at = item[_LAST_USED]["S"] if _LAST_USED in item else None
    return token


def _owner_model_key(owner: str, name: str) -> dict[str, dict[str, str]]:
    """The index item that lists a model under its owner (written with the model)."""
    return {r.PK: _s(f"OWNER_MODELS#{owner}"), r.SK: _s(name)}


def _member_key(org: str, username: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"ORG#{org}"), r.SK: _s(f"MEMBER#{username}")}


def _usage_key(account: str, day: str, hardware: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"USAGE#{account}"), r.SK: _s(f"{day}#{hardware}")}


def _rate_key(key: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"RATE#{key}"), r.SK: _s("RATE")}


def _model_key(owner: str, name: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"MODEL#{owner}/{name}"), r.SK: _s("MODEL")}


def _version_key(owner: str, name: str, version_id: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"MODEL#{owner}/{name}"), r.SK: _s(f"VERSION#{version_id}")}


def _prediction_key(prediction_id: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"PREDICTION#{prediction_id}"), r.SK: _s("PREDICTION")}


def _deployment_key(owner: str, name: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"DEPLOYMENTS#{owner}"), r.SK: _s(f"DEPLOYMENT#{name}")}


def _runner_key(runner_id: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"RUNNER#{runner_id}"), r.SK: _s("RUNNER")}


def _file_key(file_id: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"FILE#{file_id}"), r.SK: _s("FILE")}


def _file_item(file: File) -> dict[str, dict[str, Any]]:
    item = {
        **_file_key(file.id),
        r.GSI1_PK: _s(f"FILES#{file.owner}"),
        r.GSI1_SK: _s(f"{file.created_at}#{file.id}"),
        r.DATA: _s(_dumps(file.to_dict())),
    }
    _check_size(item, f"File {file.id}")
    return item


def _outbox_key(event_id: str) -> dict[str, dict[str, str]]:
    return {r.PK: _s(f"OUTBOX#{event_id}"), r.SK: _s("OUTBOX")}


_RUNS = "runs"  # run_count lives in its own attribute: increments are atomic ADDs


def _model_item(model: Model) -> dict[str, dict[str, Any]]:
    item = {
        **_model_key(model.owner, model.name),
        r.DATA: _s(_dumps(model.to_dict())),
        _RUNS: _n(int(model.run_count or 0)),
    }
    if model.visibility == "public":
        item[r.GSI1_PK] = _s(_PUBLIC_MODELS)
        item[r.GSI1_SK] = _s(_model_sort(model.created_at, model.owner, model.name))
        if model.latest_version_created_at:
            item[r.GSI2_PK] = _s(_PUBLIC_MODELS_BY_LATEST)
            item[r.GSI2_SK] = _s(_model_sort(model.latest_version_created_at, model.owner, model.name))
    _check_size(item, f"Model {model.owner}/{model.name}")
    return item


def _model(item: dict[str, dict[str, Any]]) -> Model:
    model = Model.from_dict(_data(item))
    if _RUNS in item:
        model.run_count = int(item[_RUNS]["N"])
    return model


def _version_item(version: Version) -> dict[str, dict[str, Any]]:
    model = f"{version.owner}/{version.name}"
    item = {
        **_version_key(version.owner, version.name, version.id),
        r.GSI1_PK: _s(f"VERSIONS#{model}"),
        r.GSI1_SK: _s(f"{version.created_at}#{version.id}"),
        r.GSI2_PK: _s(f"VERSION#{version.id}"),
        r.GSI2_SK: _s(model),
        r.DATA: _s(_dumps(version.to_dict())),
    }
    _check_size(item, f"Version {version.id} of {model}")
    return item


def _list_partition(kind: str, owner: str) -> str:
    return f"{'TRAININGS' if kind == 'training' else 'PREDICTIONS'}#{owner}"


def _prediction_item(prediction: Prediction, rev: int) -> dict[str, dict[str, Any]]:
    item = {
        **_prediction_key(prediction.id),
        r.GSI1_PK: _s(_list_partition(prediction.kind, prediction.owner)),
        r.GSI1_SK: _s(f"{prediction.created_at}#{prediction.id}"),
        r.STATUS: _s(str(prediction.status)),
        r.REV: _n(rev),
        r.DATA: _s(_dumps(prediction.to_dict())),
    }
    _check_size(item, f"Prediction {prediction.id}")
    return item


def _deployment_item(deployment: Deployment) -> dict[str, dict[str, Any]]:
    item = {
        **_deployment_key(deployment.owner, deployment.name),
        r.RELEASE: _n(deployment.release_number),
        r.DATA: _s(_dumps(deployment.to_dict())),
    }
    if deployment.min_instances > 0:  # sparse: only deployments the expirer keeps warm
        item[r.GSI2_PK] = _s(_WARM_DEPLOYMENTS)
        item[r.GSI2_SK] = _s(f"{deployment.owner} {deployment.name}")
    _check_size(item, f"Deployment {deployment.owner}/{deployment.name}")
    return item


def _runner_item(runner: Runner) -> dict[str, dict[str, Any]]:
    item = {
        **_runner_key(runner.id),
        r.GSI1_PK: _s(_RUNNERS_PARTITION),
        r.GSI1_SK: _s(f"{runner.pool}#{runner.id}"),
        r.DATA: _s(_dumps(runner.to_dict())),
    }
    _check_size(item, f"Runner {runner.id}")
    return item


def _outbox_item(event: OutboxEvent) -> dict[str, dict[str, Any]]:
    item = {
        **_outbox_key(event.id),
        r.GSI1_PK: _s(f"{_OUTBOX_PARTITION}#{event.kind}"),
        r.GSI1_SK: _s(f"{event.due_at}#{event.id}"),
        r.DUE_AT: _s(event.due_at),
        r.ATTEMPTS: _n(event.attempts),
        r.DATA: _s(_dumps(event.to_dict())),
    }
    _check_size(item, f"Outbox event {event.id}")
    return item


def _outbox_event(item: dict[str, dict[str, Any]]) -> OutboxEvent:
    event = OutboxEvent.from_dict(_data(item))
    event.due_at = item[r.DUE_AT]["S"]
    event.attempts = int(item[r.ATTEMPTS]["N"])
    return event


class _Table:
    """Queries shared by the adapters: one partition, a page at a time, opaque cursors."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table_name = table_name

    def get(self, key: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]] | None:
        resp = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True)
        return resp.get("Item")

    def query(
        self,
        *,
        index: str | None,
        partition: str,
        sort_condition: str | None = None,
        sort_values: dict[str, dict[str, str]] | None = None,
        forward: bool,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[dict[str, dict[str, Any]]], str | None]:
        """Items of one partition in sort-key order, at most `limit`, plus the next cursor
        (None when nothing follows: one item more than asked is read to know it)."""
        if limit < 1:
            raise InvalidRequest("limit must be at least 1.")
        pk_name, sk_name = {
            None: (r.PK, r.SK),
            r.GSI1: (r.GSI1_PK, r.GSI1_SK),
            r.GSI2: (r.GSI2_PK, r.GSI2_SK),
        }[index]
        key_names = [r.PK, r.SK] + ([pk_name, sk_name] if index else [])
        condition = "#pk = :pk"
        names = {"#pk": pk_name}
        values = {":pk": _s(partition)}
        if sort_condition:
            condition += f" AND {sort_condition}"
            names["#sk"] = sk_name
            values.update(sort_values or {})
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": forward,
        }
        if index:
            kwargs["IndexName"] = index
        if cursor:
            position = cursors.decode(cursor, key_names)
            if position[pk_name] != partition:
                raise InvalidRequest("The cursor is not valid; use the `next` URL of a previous page.")
            kwargs["ExclusiveStartKey"] = {k: _s(v) for k, v in position.items()}
        items: list[dict[str, dict[str, Any]]] = []
        while True:
            kwargs["Limit"] = limit + 1 - len(items)
            resp = self.client.query(**kwargs)
            items.extend(resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if len(items) > limit or not last:
                break
            kwargs["ExclusiveStartKey"] = last  # a 1 MB page: read on
        if len(items) <= limit:
            return items, None
        items = items[:limit]
        tail = items[-1]
        return items, cursors.encode({k: tail[k]["S"] for k in key_names})

    def query_all(self, **kwargs: Any) -> list[dict[str, dict[str, Any]]]:
        out: list[dict[str, dict[str, Any]]] = []
        cursor = None
        while True:
            items, cursor = self.query(cursor=cursor, limit=100, **kwargs)
            out.extend(items)
            if cursor is None:
                return out


def _cancellation_codes(exc: ClientError) -> list[str]:
    return [(reason or {}).get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]


class DynamoStateStore:
    """StateStore on a DynamoDB table created from `cogplane.resources.create_table_kwargs`."""

    def __init__(self, client: Any, table_name: str, clock: Any = None) -> None:
        self.client = client
        self.table_name = table_name
        self._table = _Table(client, table_name)
        self.clock = clock  # times the derived outbox events (webhook throttling); wall time if None

    def _now(self) -> str:
        return self.clock.now() if self.clock is not None else _now()

    def _conditional(self, call: Callable[..., Any], condition: str, error: Exception, **kwargs: Any) -> None:
        """One put/delete under `attribute_(not_)exists(pk)`; raise `error` when it fails."""
        try:
            call(
                TableName=self.table_name,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#pk": r.PK},
                **kwargs,
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise error from exc
            raise

    def _put_new(self, item: dict[str, Any], conflict: str) -> None:
        """Write an item that must not exist yet (else Conflict)."""
        self._conditional(self.client.put_item, "attribute_not_exists(#pk)", Conflict(conflict), Item=item)

    def _put_existing(self, item: dict[str, Any], missing: str) -> None:
        """Replace an item that must exist (else NotFound)."""
        self._conditional(self.client.put_item, "attribute_exists(#pk)", NotFound(missing), Item=item)

    def _delete_existing(self, key: dict[str, Any], missing: str) -> None:
        """Delete an item that must exist (else NotFound)."""
        self._conditional(self.client.delete_item, "attribute_exists(#pk)", NotFound(missing), Key=key)

    # --- accounts and tokens --------------------------------------------------------------
    def create_account(self, account: Account) -> bool:
        try:
            self._put_new(_account_item(account), "")
        except Conflict:
            return False
        return True

    def get_account(self, username: str) -> Account | None:
        item = self._table.get(_account_key(username))
        return Account.from_dict(_data(item)) if item else None

    def update_account(self, account: Account) -> None:
        self._put_existing(_account_item(account), f"Account {account.username} not found.")

    def list_accounts(self, *, cursor: str | None = None, limit: int = 100) -> Page[Account]:
        items, nxt = self._table.query(index=r.GSI1, partition=_ACCOUNTS, forward=True, cursor=cursor, limit=limit)
        return Page(items=[Account.from_dict(_data(i)) for i in items], next_cursor=nxt)

    def put_token(self, token: ApiToken) -> bool:
        try:
            self._put_new(_token_item(token), "")
        except Conflict:
            return False
        return True

    def get_token(self, token_hash: str) -> ApiToken | None:
        item = self._table.get(_token_key(token_hash))
        return _token(item) if item else None

    def list_tokens(self, account: str) -> list[ApiToken]:
        items = self._table.query_all(index=r.GSI1, partition=f"TOKENS#{account}", forward=True)
        return [_token(i) for i in items]

    def touch_token(self, token_hash: str, used_at: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=_token_key(token_hash),
                UpdateExpression="SET #used = :at",
                ConditionExpression="attribute_exists(#pk) AND (attribute_not_exists(#used) OR #used < :at)",
                ExpressionAttributeNames={"#pk": r.PK, "#used": _LAST_USED},
                ExpressionAttributeValues={":at": _s(used_at)},
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise

    def delete_token(self, token_id: str) -> ApiToken | None:
        # the id index (gsi2) finds the hash; the delete itself is on the base table, conditional
        items, _ = self._table.query(index=r.GSI2, partition=f"TOKENID#{token_id}", forward=True, cursor=None, limit=10)
        for item in items:
            token = _token(item)
            try:
                resp = self.client.delete_item(
                    TableName=self.table_name,
                    Key=_token_key(token.token_hash),
                    ConditionExpression="attribute_exists(#pk)",
                    ExpressionAttributeNames={"#pk": r.PK},
                    ReturnValues="ALL_OLD",
                )
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    continue
                raise
            return _token(resp["Attributes"]) if resp.get("Attributes") else token
        return None

    # --- organization members -----------------------------------------------------------
    def put_member(self, membership: Membership) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                **_member_key(membership.org, membership.username),
                r.GSI1_PK: _s(f"MEMBERSHIPS#{membership.username}"),
                r.GSI1_SK: _s(membership.org),
                r.DATA: _s(_dumps(membership.to_dict())),
            },
        )

    def get_member(self, org: str, username: str) -> Membership | None:
        item = self._table.get(_member_key(org, username))
        return Membership.from_dict(_data(item)) if item else None

    def delete_member(self, org: str, username: str) -> bool:
        try:
            self._delete_existing(_member_key(org, username), "")
        except NotFound:
            return False
        return True

    def list_members(self, org: str) -> list[Membership]:
        items = self._table.query_all(
            index=None,
            partition=f"ORG#{org}",
            sort_condition="begins_with(#sk, :p)",
            sort_values={":p": _s("MEMBER#")},
            forward=True,
        )
        return [Membership.from_dict(_data(i)) for i in items]

    def list_memberships(self, username: str) -> list[Membership]:
        items = self._table.query_all(index=r.GSI1, partition=f"MEMBERSHIPS#{username}", forward=True)
        # the index trails writes by a moment: confirm each on the base table (consistent read)
        return [
            m
            for m in (Membership.from_dict(_data(i)) for i in items)
            if self._table.get(_member_key(m.org, m.username)) is not None
        ]

    # --- usage --------------------------------------------------------------------------
    def list_usage(self, account: str, *, since: str, until: str) -> list[UsageRecord]:
        if since > until:
            return []
        items = self._table.query_all(
            index=None,
            partition=f"USAGE#{account}",
            sort_condition="#sk BETWEEN :lo AND :hi",
            sort_values={":lo": _s(since), ":hi": _s(until + "$")},
            forward=True,
        )
        return [
            UsageRecord(
                account=account,
                day=i[r.SK]["S"].partition("#")[0],
                hardware=i[r.SK]["S"].partition("#")[2],
                predict_time=float(i[_PREDICT_TIME]["N"]),
                predictions=int(i[_PREDICTIONS]["N"]),
            )
            for i in items
        ]

    # --- models -------------------------------------------------------------------------
    def create_model(self, model: Model) -> None:
        # with the owner's index item (listing an owner's models is a Query of that partition)
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": _model_item(model),
                            "ConditionExpression": "attribute_not_exists(#pk)",
                            "ExpressionAttributeNames": {"#pk": r.PK},
                        }
                    },
                    {"Put": {"TableName": self.table_name, "Item": _owner_model_key(model.owner, model.name)}},
                ]
            )
        except ClientError as exc:
            if _code(exc) == "TransactionCanceledException" and _cancellation_codes(exc)[:1] == [
                "ConditionalCheckFailed"
            ]:
                raise Conflict(f"A model named {model.owner}/{model.name} already exists.") from exc
            raise

    def get_model(self, owner: str, name: str) -> Model | None:
        item = self._table.get(_model_key(owner, name))
        return _model(item) if item else None

    def update_model(self, model: Model) -> None:
        self._put_existing(_model_item(model), f"Model {model.owner}/{model.name} not found.")

    def delete_model(self, owner: str, name: str) -> None:
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table_name,
                            "Key": _model_key(owner, name),
                            "ConditionExpression": "attribute_exists(#pk)",
                            "ExpressionAttributeNames": {"#pk": r.PK},
                        }
                    },
                    {"Delete": {"TableName": self.table_name, "Key": _owner_model_key(owner, name)}},
                ]
            )
        except ClientError as exc:
            if _code(exc) == "TransactionCanceledException" and _cancellation_codes(exc)[:1] == [
                "ConditionalCheckFailed"
            ]:
                raise NotFound(f"Model {owner}/{name} not found.") from exc
            raise

    def list_models_of(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[Model]:
        items, nxt = self._table.query(
            index=None, partition=f"OWNER_MODELS#{owner}", forward=True, cursor=cursor, limit=limit
        )
        models = [self.get_model(owner, i[r.SK]["S"]) for i in items]
        return Page(items=[m for m in models if m is not None], next_cursor=nxt)

    def list_models(
        self,
        *,
        sort_by: str = "latest_version_created_at",
        descending: bool = True,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Model]:
        if sort_by == "model_created_at":
            index, partition = r.GSI1, _PUBLIC_MODELS
        elif sort_by == "latest_version_created_at":
            index, partition = r.GSI2, _PUBLIC_MODELS_BY_LATEST
        else:
            raise InvalidRequest(f"Cannot sort models by {sort_by!r}.", field="sort_by")
        items, nxt = self._table.query(
            index=index, partition=partition, forward=not descending, cursor=cursor, limit=limit
        )
        return Page(items=[_model(i) for i in items], next_cursor=nxt)

    # --- versions -----------------------------------------------------------------------
    def put_version(self, version: Version) -> tuple[Version, bool]:
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_version_item(version),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": r.PK},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item") or self._table.get(_version_key(version.owner, version.name, version.id))
            if old is None:  # deleted in between: try again
                return self.put_version(version)
            return Version.from_dict(_data(old)), False
        return version, True

    def get_version(self, owner: str, name: str, version_id: str) -> Version | None:
        item = self._table.get(_version_key(owner, name, version_id))
        return Version.from_dict(_data(item)) if item else None

    def find_versions(self, version_id: str) -> list[Version]:
        items = self._table.query_all(index=r.GSI2, partition=f"VERSION#{version_id}", forward=True)
        return [Version.from_dict(_data(i)) for i in items]

    def list_versions(self, owner: str, name: str, *, cursor: str | None = None, limit: int = 100) -> Page[Version]:
        items, nxt = self._table.query(
            index=r.GSI1, partition=f"VERSIONS#{owner}/{name}", forward=False, cursor=cursor, limit=limit
        )
        return Page(items=[Version.from_dict(_data(i)) for i in items], next_cursor=nxt)

    def delete_version(self, owner: str, name: str, version_id: str) -> None:
        self._delete_existing(
            _version_key(owner, name, version_id), f"Version {version_id} of {owner}/{name} not found."
        )

    # --- predictions --------------------------------------------------------------------
    def _write(self, put: dict[str, Any], outbox: Sequence[OutboxEvent], also: Sequence[dict] = ()) -> None:
        """Put one item (with its condition), then `also` (more transaction items) and the outbox
        events, in one transaction. Raises the ClientError; for a transaction its reasons come
        in that order (the main item's first)."""
        if not outbox and not also:
            self.client.put_item(TableName=self.table_name, **put)
            return
        if len(outbox) + len(also) + 1 > _MAX_TRANSACTION_ITEMS:
            raise InvalidRequest(f"At most {_MAX_TRANSACTION_ITEMS - 1} outbox events per write.")
        items = [{"Put": {"TableName": self.table_name, **put}}, *also]
        for event in outbox:
            items.append(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": _outbox_item(event),
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": r.PK},
                    }
                }
            )
        self.client.transact_write_items(TransactItems=items)

    @staticmethod
    def _main_item_failed(exc: ClientError) -> bool:
        """True if the error says the main item's condition failed (not an outbox event's)."""
        if _code(exc) == "ConditionalCheckFailedException":
            return True
        if _code(exc) == "TransactionCanceledException":
            codes = _cancellation_codes(exc)
            return bool(codes) and codes[0] == "ConditionalCheckFailed"
        return False

    def create_prediction(self, prediction: Prediction, outbox: Sequence[OutboxEvent] = ()) -> None:
        outbox = [*outbox, *derive(None, prediction, self._now())]
        put = {
            "Item": _prediction_item(prediction, rev=1),
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": r.PK},
        }
        owner, _, name = prediction.model.partition("/")
        count_run = {
            "Update": {  # the model's run_count, in the same transaction (no extra call)
                "TableName": self.table_name,
                "Key": _model_key(owner, name),
                "UpdateExpression": "ADD #runs :one",
                "ConditionExpression": "attribute_exists(#pk)",
                "ExpressionAttributeNames": {"#runs": _RUNS, "#pk": r.PK},
                "ExpressionAttributeValues": {":one": _n(1)},
            }
        }
        for also in ([count_run], []):
            try:
                self._write(put, outbox, also)
                return
            except ClientError as exc:
                if self._main_item_failed(exc):
                    raise Conflict(f"Prediction {prediction.id} already exists.") from exc
                if _code(exc) != "TransactionCanceledException":
                    raise
                if also and _cancellation_codes(exc)[1:2] == ["ConditionalCheckFailed"]:
                    continue  # no such model (it was deleted): store the prediction uncounted
                raise Conflict(f"An outbox event of prediction {prediction.id} already exists.") from exc

    def get_prediction(self, prediction_id: str) -> Prediction | None:
        item = self._table.get(_prediction_key(prediction_id))
        return Prediction.from_dict(_data(item)) if item else None

    def update_prediction(
        self,
        prediction_id: str,
        changes: dict[str, Any],
        *,
        expect_status: Iterable[str] | None = None,
        outbox: Sequence[OutboxEvent] = (),
    ) -> Prediction:
        allowed = sorted(_NON_TERMINAL if expect_status is None else {str(s) for s in expect_status})
        if changes.get("id", prediction_id) != prediction_id:
            raise InvalidRequest("A prediction's id cannot change.")
        for _ in range(_UPDATE_RETRIES):
            item = self._table.get(_prediction_key(prediction_id))
            if item is None:
                raise NotFound(f"Prediction {prediction_id} not found.")
            status = item[r.STATUS]["S"]
            if status not in allowed:
                raise Conflict(f"Prediction {prediction_id} is {status}.")
            rev = int(item[r.REV]["N"])
            data = _data(item)
            before = Prediction.from_dict(dict(data))
            data.update(changes)
            updated = Prediction.from_dict(data)
            events = [*outbox, *derive(before, updated, self._now())]
            status_values = {f":s{i}": _s(s) for i, s in enumerate(allowed)}
            put = {
                "Item": _prediction_item(updated, rev=rev + 1),
                # the rev check makes the read-modify-write safe; the status check states the rule
                "ConditionExpression": f"#rev = :rev AND #status IN ({', '.join(status_values)})",
                "ExpressionAttributeNames": {"#rev": r.REV, "#status": r.STATUS},
                "ExpressionAttributeValues": {":rev": _n(rev), **status_values},
            }
            delta = billable(before, updated)
            usage = (
                []
                if delta is None
                else [
                    {
                        "Update": {  # billable time, in the same transaction
                            "TableName": self.table_name,
                            "Key": _usage_key(delta.account, delta.day, delta.hardware),
                            "UpdateExpression": "ADD #t :t, #n :one",
                            "ExpressionAttributeNames": {"#t": _PREDICT_TIME, "#n": _PREDICTIONS},
                            "ExpressionAttributeValues": {":t": {"N": repr(delta.predict_time)}, ":one": _n(1)},
                        }
                    }
                ]
            )
            try:
                self._write(put, events, usage)
            except ClientError as exc:
                if self._main_item_failed(exc):
                    continue  # changed meanwhile: read again (and maybe find it terminal)
                if _code(exc) == "TransactionCanceledException":
                    raise Conflict(f"An outbox event of prediction {prediction_id} already exists.") from exc
                raise
            return updated
        raise Conflict(f"Prediction {prediction_id} kept changing; try again.")

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
        # sort key = created_at#id: `#` follows every timestamp, `$` sorts right after `#`
        condition, values = None, {}
        if created_after and created_before:
            if created_after + "$" > created_before:
                return Page(items=[])
            condition = "#sk BETWEEN :lo AND :hi"
            values = {":lo": _s(created_after + "$"), ":hi": _s(created_before)}
        elif created_after:
            condition, values = "#sk > :lo", {":lo": _s(created_after + "$")}
        elif created_before:
            condition, values = "#sk < :hi", {":hi": _s(created_before)}
        items, nxt = self._table.query(
            index=r.GSI1,
            partition=_list_partition(kind, owner),
            sort_condition=condition,
            sort_values=values,
            forward=False,
            cursor=cursor,
            limit=limit,
        )
        return Page(items=[Prediction.from_dict(_data(i)) for i in items], next_cursor=nxt)

    def delete_prediction(self, prediction_id: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=_prediction_key(prediction_id))

    # --- files --------------------------------------------------------------------------
    def create_file(self, file: File) -> None:
        self._put_new(_file_item(file), f"File {file.id} already exists.")

    def get_file(self, file_id: str) -> File | None:
        item = self._table.get(_file_key(file_id))
        return File.from_dict(_data(item)) if item else None

    def list_files(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[File]:
        items, nxt = self._table.query(
            index=r.GSI1, partition=f"FILES#{owner}", forward=False, cursor=cursor, limit=limit
        )
        return Page(items=[File.from_dict(_data(i)) for i in items], next_cursor=nxt)

    def delete_file(self, file_id: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=_file_key(file_id))

    # --- deployments --------------------------------------------------------------------
    def create_deployment(self, deployment: Deployment) -> None:
        self._put_new(
            _deployment_item(deployment), f"A deployment named {deployment.owner}/{deployment.name} already exists."
        )

    def get_deployment(self, owner: str, name: str) -> Deployment | None:
        item = self._table.get(_deployment_key(owner, name))
        return Deployment.from_dict(_data(item)) if item else None

    def update_deployment(self, deployment: Deployment, *, expect_release: int) -> None:
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_deployment_item(deployment),
                ConditionExpression="#rel = :rel",
                ExpressionAttributeNames={"#rel": r.RELEASE},
                ExpressionAttributeValues={":rel": _n(expect_release)},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"Deployment {deployment.owner}/{deployment.name} changed meanwhile; retry.") from exc
            raise

    def delete_deployment(self, owner: str, name: str) -> None:
        self._delete_existing(_deployment_key(owner, name), f"Deployment {owner}/{name} not found.")

    def list_deployments(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[Deployment]:
        items, nxt = self._table.query(
            index=None,
            partition=f"DEPLOYMENTS#{owner}",
            sort_condition="begins_with(#sk, :prefix)",
            sort_values={":prefix": _s("DEPLOYMENT#")},
            forward=True,
            cursor=cursor,
            limit=limit,
        )
        return Page(items=[Deployment.from_dict(_data(i)) for i in items], next_cursor=nxt)

    def list_warm_deployments(self, limit: int = 100) -> list[Deployment]:
        if limit < 1:
            return []
        items, _ = self._table.query(index=r.GSI2, partition=_WARM_DEPLOYMENTS, forward=True, cursor=None, limit=limit)
        # the index is eventually consistent: trust the record, not its presence in the index
        found = [Deployment.from_dict(_data(i)) for i in items]
        return [d for d in found if d.min_instances > 0]

    # --- runners ------------------------------------------------------------------------
    # One item per runner; the gsi1 partition RUNNERS sorted by pool#id lists them without a
    # Scan: one pool is a begins_with Query, all of them a Query of the partition. The partition
    # holds only live runners (each deletes its record on exit; the expirer removes lost ones).
    def put_runner(self, runner: Runner) -> None:
        self.client.put_item(TableName=self.table_name, Item=_runner_item(runner))

    def get_runner(self, runner_id: str) -> Runner | None:
        item = self._table.get(_runner_key(runner_id))
        return Runner.from_dict(_data(item)) if item else None

    def list_runners(self, pool: str | None = None) -> list[Runner]:
        if pool is None:
            items = self._table.query_all(index=r.GSI1, partition=_RUNNERS_PARTITION, forward=True)
        else:
            items = self._table.query_all(
                index=r.GSI1,
                partition=_RUNNERS_PARTITION,
                sort_condition="begins_with(#sk, :prefix)",
                sort_values={":prefix": _s(f"{pool}#")},
                forward=True,
            )
        # GSIs are eventually consistent: an item may trail its latest put by a moment; each
        # item carries its whole record, so what is listed is always a complete runner.
        runners = [Runner.from_dict(_data(i)) for i in items]
        if pool is not None:  # a pool name containing '#' must not pick up another pool's runners
            runners = [x for x in runners if x.pool == pool]
        return sorted(runners, key=lambda x: x.id)  # by id, as the local adapter lists them

    def delete_runner(self, runner_id: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=_runner_key(runner_id))


class DynamoOutbox:
    """Outbox on the same table: events wait in one GSI partition sorted by due time."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table_name = table_name
        self._table = _Table(client, table_name)

    def add(self, events: Sequence[OutboxEvent]) -> None:
        for event in events:
            self.client.put_item(TableName=self.table_name, Item=_outbox_item(event))

    def due(self, now: str, *, kind: str, limit: int = 100) -> list[OutboxEvent]:
        # sort key = due_at#id; `$` sorts right after `#`, so this is due_at <= now
        items, _ = self._table.query(
            index=r.GSI1,
            partition=f"{_OUTBOX_PARTITION}#{kind}",
            sort_condition="#sk < :upto",
            sort_values={":upto": _s(now + "$")},
            forward=True,
            cursor=None,
            limit=limit,
        )
        return [_outbox_event(i) for i in items]

    def complete(self, event_id: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=_outbox_key(event_id))

    def reschedule(self, event_id: str, *, due_at: str, attempts: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=_outbox_key(event_id),
                UpdateExpression="SET #due = :due, #attempts = :attempts, #sk = :sk",
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={
                    "#pk": r.PK,
                    "#due": r.DUE_AT,
                    "#attempts": r.ATTEMPTS,
                    "#sk": r.GSI1_SK,
                },
                ExpressionAttributeValues={
                    ":due": _s(due_at),
                    ":attempts": _n(attempts),
                    ":sk": _s(f"{due_at}#{event_id}"),
                },
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            # completed meanwhile: nothing to reschedule


class DynamoRateLimiter:
    """Token buckets on the same table, one item per bucket. Each take is a read and a put
    conditional on the bucket being unchanged since the read (optimistic concurrency: two API
    Lambdas never both spend the same token); a lost race reads again. TTL removes idle buckets."""

    _RETRIES = 20

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table_name = table_name
        self._table = _Table(client, table_name)

    def take(self, key: str, *, per_minute: int, now: float) -> RateDecision:
        decision = None
        for _ in range(self._RETRIES):
            item = self._table.get(_rate_key(key))
            tokens = float(item["tokens"]["N"]) if item else None
            updated = float(item["updated"]["N"]) if item else None
            level, decision = take(tokens, updated, now, per_minute)
            condition, values = "attribute_not_exists(#pk)", {}
            if item is not None:
                condition, values = (
                    "#updated = :prev AND #tokens = :prev_tokens",
                    {":prev": item["updated"], ":prev_tokens": item["tokens"]},
                )
            stamp = max(now, updated) if updated is not None else now
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item={
                        **_rate_key(key),
                        "tokens": {"N": repr(level)},
                        "updated": {"N": repr(stamp)},
                        r.TTL_ATTRIBUTE: _n(int(stamp) + 3600),
                    },
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#pk": r.PK}
                    if item is None
                    else {"#updated": "updated", "#tokens": "tokens"},
                    **({"ExpressionAttributeValues": values} if values else {}),
                )
                return decision
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
        # constant contention: refuse rather than let requests through uncounted
        if decision is None:
            raise RuntimeError("rate limit: no attempt was made")
        return RateDecision(
            allowed=False,
            limit=decision.limit,
            remaining=0,
            reset_seconds=decision.reset_seconds,
            retry_after=max(1, decision.retry_after),
        )
