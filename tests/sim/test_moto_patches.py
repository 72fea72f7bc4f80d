"""The simulation's fixes to moto (simaws.stack.patch_moto), against moto server as `make sim-aws`
runs it: a cancelled TransactWriteItems leaves the table as it was and the stream flowing."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from simaws.stack import clients, start_moto

TABLE = "patched"


@pytest.fixture(scope="module")
def aws():
    server, endpoint = start_moto()
    try:
        c = clients(endpoint)
        c["dynamodb"].create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        yield c
    finally:
        server.stop()


def _item(pk: str, value: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": "X"}, "v": {"S": value}}


def _reader(c):
    """A stream reader from LATEST, as the simulation's pollers read it."""
    streams = c["dynamodbstreams"]
    arn = streams.list_streams(TableName=TABLE)["Streams"][0]["StreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    latest = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")
    state = {"it": latest["ShardIterator"]}

    def read() -> list[tuple[str, str]]:
        resp = streams.get_records(ShardIterator=state["it"])
        state["it"] = resp["NextShardIterator"]
        return [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in resp["Records"]]

    return read


def _value(c, pk: str) -> str | None:
    item = c["dynamodb"].get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "X"}}).get("Item")
    return item["v"]["S"] if item else None


def test_a_cancelled_transaction_changes_nothing_and_the_stream_keeps_flowing(aws):
    db = aws["dynamodb"]
    db.put_item(TableName=TABLE, Item=_item("a", "old"))
    read = _reader(aws)
    with pytest.raises(ClientError) as raised:
        db.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": _item("new", "1")}},  # written, then undone
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "a"}, "sk": {"S": "X"}},
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "changed"}},
                    }
                },
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": _item("b", "1"),
                        "ConditionExpression": "attribute_exists(pk)",  # fails: b does not exist
                    }
                },
            ]
        )
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert (_value(aws, "new"), _value(aws, "a"), _value(aws, "b")) == (None, "old", None)
    assert read() == [], "a cancelled transaction leaves no stream record"
    # the pollers' iterator still reads the table's stream (moto alone swapped in a copy of it: nothing
    # written afterwards ever reached a reader)
    db.put_item(TableName=TABLE, Item=_item("c", "1"))
    db.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item("d", "1")}},
            {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "a"}, "sk": {"S": "X"}}}},
        ]
    )
    assert read() == [("INSERT", "c"), ("INSERT", "d"), ("REMOVE", "a")]
    assert (_value(aws, "a"), _value(aws, "d")) == (None, "1")


def test_the_same_item_twice_is_refused_and_undone(aws):
    db = aws["dynamodb"]
    db.put_item(TableName=TABLE, Item=_item("twice", "old"))
    read = _reader(aws)
    with pytest.raises(ClientError):
        db.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": _item("twice", "1")}},
                {"Put": {"TableName": TABLE, "Item": _item("twice", "2")}},
            ]
        )
    assert _value(aws, "twice") == "old"
    assert read() == []
