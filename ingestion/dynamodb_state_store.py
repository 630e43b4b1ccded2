"""The AWS state store: one DynamoDB table of per-customer items (``ingestion.state_codec``),
written with one conditional PutItem per changed customer."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from core import aws

from .state_codec import Item, decode, encode
from .state_store import CHECKPOINT_PREFIX, DEAD_LETTER_PREFIX, HORIZON_PREFIX


class DynamoDBStateStore:
    """AWS store: one DynamoDB table (on-demand), key ``customer_id``.

    Reads: BatchGetItem (100 keys, strongly consistent). Writes: one conditional PutItem per
    changed customer (in parallel); a failed condition is that customer's conflict.
    """

    def __init__(self, table: str, client=None, create: bool = True, max_workers: int = 16):

        self.max_workers = max_workers
        self.table = table
        self.ddb = client or aws.boto3_client("dynamodb")
        if create:
            self.ensure_table()

    def ensure_table(self) -> None:
        try:
            self.ddb.describe_table(TableName=self.table)
        except self.ddb.exceptions.ResourceNotFoundException:
            self.ddb.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                                  KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"}],
                                  AttributeDefinitions=[{"AttributeName": "customer_id", "AttributeType": "S"}])
            self.ddb.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 0.1})

    def load_many(self, customer_ids: Iterable[str]) -> dict[str, Item]:
        ids = list(dict.fromkeys(customer_ids))
        out: dict[str, Item] = {}
        for i in range(0, len(ids), 100):
            req = {self.table: {"Keys": [{"customer_id": {"S": c}} for c in ids[i:i + 100]], "ConsistentRead": True}}
            while req:
                resp = self.ddb.batch_get_item(RequestItems=req)
                for it in resp["Responses"].get(self.table, []):
                    cid = it["customer_id"]["S"]
                    out[cid] = decode(cid, int(it["v"]["N"]), it["b"]["B"])
                req = resp.get("UnprocessedKeys") or None
        return out

    def _put(self, it: Item) -> dict:
        item = {"customer_id": {"S": it.customer_id}, "v": {"N": str(it.version + 1)}, "b": {"B": encode(it)}}
        if it.tick_until is not None:
            item["tu"] = {"N": str(it.tick_until)}
        put = {"TableName": self.table, "Item": item}
        if it.version == 0:
            put["ConditionExpression"] = "attribute_not_exists(customer_id)"
        else:
            put["ConditionExpression"] = "#v = :v"
            put["ExpressionAttributeNames"] = {"#v": "v"}
            put["ExpressionAttributeValues"] = {":v": {"N": str(it.version)}}
        return put

    def save_many(self, items: list[Item]) -> set[str]:
        """One conditional PutItem per item, up to ``max_workers`` in flight. Not a transaction:
        each customer's write is independently atomic and conditional (all exactly-once needs),
        and TransactWriteItems would bill 2 write units per KB instead of 1."""
        conflicts: set[str] = set()

        def put(it: Item) -> bool:
            try:
                self.ddb.put_item(**self._put(it))
                return True
            except self.ddb.exceptions.ConditionalCheckFailedException:
                return False

        if len(items) <= 1:
            results = [put(it) for it in items]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
                results = list(pool.map(put, items))
        for it, ok in zip(items, results):
            if ok:
                it.version += 1
            else:
                conflicts.add(it.customer_id)
        return conflicts

    def release(self, items: list[Item]) -> None:
        """Nothing kept: a Lambda invocation reads its items fresh."""

    def _keys_present(self, keys: list[str], projection: str, attr: str | None = None) -> dict[str, dict]:
        out: dict[str, dict] = {}
        keys = list(dict.fromkeys(keys))
        for i in range(0, len(keys), 100):
            req = {self.table: {"Keys": [{"customer_id": {"S": k}} for k in keys[i:i + 100]], "ConsistentRead": True,
                                "ProjectionExpression": projection}}
            while req:
                resp = self.ddb.batch_get_item(RequestItems=req)
                for it in resp["Responses"].get(self.table, []):
                    out[it["customer_id"]["S"]] = it
                req = resp.get("UnprocessedKeys") or None
        return out

    def versions(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """One strongly consistent BatchGetItem per 100 customers, versions only."""
        return {k: int(it["v"]["N"]) for k, it in self._keys_present(list(customer_ids), "customer_id, v").items()}

    def recorded_dead_letters(self, letter_ids: Iterable[str]) -> set[str]:
        n = len(DEAD_LETTER_PREFIX)
        return {k[n:] for k in self._keys_present([DEAD_LETTER_PREFIX + i for i in letter_ids], "customer_id")}

    def record_dead_letters(self, letter_ids: Iterable[str]) -> None:
        """Marker items ``#dl:<letter id>`` (BatchWriteItem, 25 per call; no ``tu``, so the tick
        scan never sees them)."""
        ids = list(dict.fromkeys(letter_ids))
        for i in range(0, len(ids), 25):
            req = {self.table: [{"PutRequest": {"Item": {"customer_id": {"S": DEAD_LETTER_PREFIX + k}}}}
                                for k in ids[i:i + 25]]}
            while req:
                req = self.ddb.batch_write_item(RequestItems=req).get("UnprocessedItems") or None

    def get_checkpoint(self, stream: str, shard: str) -> str | None:
        resp = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"customer_id": {"S": f"{CHECKPOINT_PREFIX}{stream}:{shard}"}})
        it = resp.get("Item")
        return None if it is None else it["seq"]["S"]

    def put_checkpoint(self, stream: str, shard: str, sequence_number: str) -> None:
        self.ddb.put_item(TableName=self.table, Item={"customer_id": {"S": f"{CHECKPOINT_PREFIX}{stream}:{shard}"},
                                                      "seq": {"S": sequence_number}})

    def live_customers(self, day: int) -> list[str]:
        out: list[str] = []
        kwargs = {"TableName": self.table, "ProjectionExpression": "customer_id",
                  "FilterExpression": "#tu >= :d", "ExpressionAttributeNames": {"#tu": "tu"}, "ExpressionAttributeValues": {":d": {"N": str(day)}}}
        while True:
            resp = self.ddb.scan(**kwargs)
            out += [it["customer_id"]["S"] for it in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return sorted(out)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def get_tick_horizons(self, keys: Iterable[str]) -> dict[str, int]:
        out = {}
        for k in keys:
            it = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                   Key={"customer_id": {"S": HORIZON_PREFIX + k}}).get("Item")
            if it is not None:
                out[k] = int(it["h"]["N"])
        return out

    def raise_tick_horizon(self, key: str, midnight_us: int) -> None:
        try:
            self.ddb.update_item(TableName=self.table, Key={"customer_id": {"S": HORIZON_PREFIX + key}},
                                 UpdateExpression="SET #h = :m", ConditionExpression="attribute_not_exists(#h) OR #h < :m",
                                 ExpressionAttributeNames={"#h": "h"},
                                 ExpressionAttributeValues={":m": {"N": str(midnight_us)}})
        except self.ddb.exceptions.ConditionalCheckFailedException:
            pass
