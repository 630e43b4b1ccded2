"""The serving state on DynamoDB: the deployed functions' cooldowns, alert outbox and pending scores.

A Lambda container's /tmp does not outlive it and is not shared between concurrent instances,
so the deployed ingester and batch scorer keep ``serving.state.ServingState``'s three tables in
one DynamoDB table (``MHP_SERVING_TABLE``, deploy/template.yaml), keys ``pk`` (S) + ``sk`` (S).
Same interface and semantics as the SQLite state (``tests/test_serving_dynamodb_state.py`` runs
both through the same checks):

| item                     | pk                     | sk                             | attributes                         |
|--------------------------|------------------------|--------------------------------|------------------------------------|
| cooldown                 | ``cd#<customer_id>``   | alert type                     | ``t`` (last as-of, microseconds)   |
| alert (outbox record)    | ``alert#<alert_id>``   | ``alert``                      | payload, as_of_us, attempts, last_error, delivered |
| undelivered alert        | ``#undelivered``       | ``<as_of_us:020d>#<alert_id>`` | payload, attempts, last_error      |
| pending scoring request  | ``#pending``           | ``<as_of_us:020d>#<customer>`` | customer_id, as_of_us, attempts, last_error, state |
| rank rule's cut          | ``#rank``              | alert type                     | ``v`` (the cut), ``t`` (its as-of) |

``record_alerts`` writes each alert's cooldown, outbox record and undelivered entry in one
TransactWriteItems, conditional on the cooldown it read (optimistic; re-read on a conflict) and
on the alert being new: two concurrent triggers for one customer emit one alert, as with SQLite's
``BEGIN IMMEDIATE``. Delivery deletes the undelivered entry after marking the record (a crash in
between redelivers: at least once, stable ``alert_id``). The two fixed partitions stay small:
undelivered alerts exist only while the sink is down, pending requests only while the endpoint is.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Iterable

from core import aws
from core.times import from_us, to_us

from .state import Pending

UNDELIVERED = "#undelivered"
PENDING = "#pending"
RANK = "#rank"
_MAX_TXN_ATTEMPTS = 8
_TRIGGER_WORKERS = 10   # botocore's default connection pool size (max_pool_connections)


def _sk(as_of_us: int, key: str) -> str:
    return f"{as_of_us:020d}#{key}"


class DynamoDBServingState:
    def __init__(self, table: str, client=None):
        if not table:
            raise ValueError("serving state table: expected a DynamoDB table name (MHP_SERVING_TABLE), got ''")
        self.table = table
        self.ddb = client or aws.boto3_client("dynamodb")
        self._pool: ThreadPoolExecutor | None = None

    @staticmethod
    def create_table(table: str, client=None) -> None:
        """The table's schema, for tests and the aws-local profile (the stack creates it on AWS)."""
        ddb = client or aws.boto3_client("dynamodb")
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # --- cooldown + outbox ------------------------------------------------------------------
    def _cooldown(self, customer_id: str, alert_type: str) -> int | None:
        item = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": f"cd#{customer_id}"}, "sk": {"S": alert_type}}).get("Item")
        return int(item["t"]["N"]) if item else None

    def in_cooldown(self, customer_id: str, alert_type: str, as_of: datetime, cooldown_us: int) -> bool:
        last = self._cooldown(customer_id, alert_type)
        return last is not None and abs(to_us(as_of) - last) < cooldown_us

    def _alert_exists(self, alert_id: str) -> bool:
        return "Item" in self.ddb.get_item(TableName=self.table, ConsistentRead=True, ProjectionExpression="pk",
                                           Key={"pk": {"S": f"alert#{alert_id}"}, "sk": {"S": "alert"}})

    def record_alerts(self, alerts: Iterable[dict[str, Any]], cooldown_us: int) -> list[dict[str, Any]]:
        """For each alert not in cooldown: cooldown + outbox in one transaction. Returns the enqueued ones."""
        emitted = []
        for a in alerts:
            t = to_us(datetime.fromisoformat(a["as_of"].replace("Z", "+00:00")))
            payload = json.dumps(a, sort_keys=True)
            for _ in range(_MAX_TXN_ATTEMPTS):
                last = self._cooldown(a["customer_id"], a["type"])
                if last is not None and abs(t - last) < cooldown_us:
                    break
                cd_put: dict[str, Any] = {
                    "TableName": self.table,
                    "Item": {"pk": {"S": f"cd#{a['customer_id']}"}, "sk": {"S": a["type"]},
                             "t": {"N": str(t if last is None else max(t, last))}}}
                if last is None:
                    cd_put["ConditionExpression"] = "attribute_not_exists(pk)"
                else:
                    cd_put.update(ConditionExpression="t = :old", ExpressionAttributeValues={":old": {"N": str(last)}})
                try:
                    self.ddb.transact_write_items(TransactItems=[
                        {"Put": cd_put},
                        {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                                 "Item": {"pk": {"S": f"alert#{a['alert_id']}"}, "sk": {"S": "alert"},
                                          "payload": {"S": payload}, "as_of_us": {"N": str(t)},
                                          "attempts": {"N": "0"}, "delivered": {"N": "0"}}}},
                        {"Put": {"TableName": self.table,
                                 "Item": {"pk": {"S": UNDELIVERED}, "sk": {"S": _sk(t, a["alert_id"])},
                                          "payload": {"S": payload}, "attempts": {"N": "0"}}}},
                    ])
                except self.ddb.exceptions.TransactionCanceledException:
                    if self._alert_exists(a["alert_id"]):
                        break            # already emitted (a redelivered trigger)
                    continue             # the cooldown moved under us: re-read and decide again
                emitted.append(a)
                break
            else:
                raise RuntimeError(f"serving state: alert {a['alert_id']} kept conflicting after "
                                   f"{_MAX_TXN_ATTEMPTS} attempts")
        return emitted

    def _update_alert(self, alert_id: str, expr: str, values: dict) -> dict | None:
        try:
            return self.ddb.update_item(
                TableName=self.table, Key={"pk": {"S": f"alert#{alert_id}"}, "sk": {"S": "alert"}},
                UpdateExpression=expr, ExpressionAttributeValues=values, ConditionExpression="attribute_exists(pk)",
                ReturnValues="ALL_NEW")["Attributes"]
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return None          # unknown alert id: nothing to mark (as SQLite's UPDATE of no row)

    def mark_delivered(self, alert_id: str) -> None:
        item = self._update_alert(alert_id, "SET delivered = :one, attempts = attempts + :one REMOVE last_error",
                                  {":one": {"N": "1"}})
        if item is not None:
            self.ddb.delete_item(TableName=self.table,
                                 Key={"pk": {"S": UNDELIVERED}, "sk": {"S": _sk(int(item["as_of_us"]["N"]), alert_id)}})

    def mark_failed(self, alert_id: str, error: str) -> None:
        item = self._update_alert(alert_id, "SET attempts = attempts + :one, last_error = :e",
                                  {":one": {"N": "1"}, ":e": {"S": error}})
        if item is not None and item["delivered"]["N"] == "0":
            self.ddb.update_item(TableName=self.table,
                                 Key={"pk": {"S": UNDELIVERED}, "sk": {"S": _sk(int(item["as_of_us"]["N"]), alert_id)}},
                                 UpdateExpression="SET attempts = :n, last_error = :e",
                                 ExpressionAttributeValues={":n": item["attempts"], ":e": {"S": error}})

    def _query(self, pk: str, limit: int | None = None, **kw) -> list[dict]:
        out: list[dict] = []
        args: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": "pk = :pk",
                                "ConsistentRead": True, **kw}
        args.setdefault("ExpressionAttributeValues", {})[":pk"] = {"S": pk}
        while True:
            resp = self.ddb.query(**args)
            out += resp.get("Items", [])
            if limit is not None and len(out) >= limit:
                return out[:limit]
            if "LastEvaluatedKey" not in resp:
                return out
            args["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def undelivered(self, limit: int = 1000) -> list[tuple[dict[str, Any], int, str | None]]:
        """(payload, attempts, last_error) of alerts not yet delivered, oldest event time first."""
        return [(json.loads(it["payload"]["S"]), int(it["attempts"]["N"]), it.get("last_error", {}).get("S"))
                for it in self._query(UNDELIVERED, limit)]

    def undelivered_count(self) -> int:
        return len(self._query(UNDELIVERED, ProjectionExpression="sk"))

    def outbox_counts(self) -> dict[str, int]:
        """Counts of delivered and undelivered alerts (the delivered count scans the table: for reports)."""
        delivered, args = 0, {"TableName": self.table, "Select": "COUNT",
                              "FilterExpression": "begins_with(pk, :a) AND delivered = :one",
                              "ExpressionAttributeValues": {":a": {"S": "alert#"}, ":one": {"N": "1"}}}
        while True:
            resp = self.ddb.scan(**args)
            delivered += resp["Count"]
            if "LastEvaluatedKey" not in resp:
                break
            args["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return {"delivered": delivered, "undelivered": self.undelivered_count()}

    # --- pending scoring requests -----------------------------------------------------------
    def add_pending(self, customer_ids: Iterable[str], as_of: datetime, error: str, state: str = "retry") -> None:
        t = to_us(as_of)
        for c in customer_ids:
            self.ddb.update_item(
                TableName=self.table, Key={"pk": {"S": PENDING}, "sk": {"S": _sk(t, c)}},
                UpdateExpression="SET customer_id = :c, as_of_us = :t, last_error = :e, #s = :s ADD attempts :one",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":c": {"S": c}, ":t": {"N": str(t)}, ":e": {"S": error},
                                           ":s": {"S": state}, ":one": {"N": "1"}})

    def add_triggers(self, customer_ids: Iterable[str], as_of: datetime) -> None:
        """Record scoring requests to serve later (the hook's only work); an existing one is left as is."""
        t = to_us(as_of)

        def record(c: str) -> None:
            self.ddb.update_item(
                TableName=self.table, Key={"pk": {"S": PENDING}, "sk": {"S": _sk(t, c)}},
                UpdateExpression="SET customer_id = :c, as_of_us = :t, #s = if_not_exists(#s, :s), "
                                 "attempts = if_not_exists(attempts, :zero)",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":c": {"S": c}, ":t": {"N": str(t)}, ":s": {"S": "retry"},
                                           ":zero": {"N": "0"}})

        ids = list(dict.fromkeys(customer_ids))
        if len(ids) == 1:
            record(ids[0])
            return
        # one round trip per customer: a batch's hot customers go in parallel (boto3 clients are
        # thread-safe), so the hook's time grows with batch size / _TRIGGER_WORKERS, not batch size
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_TRIGGER_WORKERS, thread_name_prefix="serving-state")
        list(self._pool.map(record, ids))

    def remove_pending(self, customer_ids: Iterable[str], as_of: datetime) -> None:
        # called after every successful scoring: read the (usually empty) partition's keys
        # instead of deleting every scored customer's key blindly
        t = to_us(as_of)
        keys = {_sk(t, c) for c in customer_ids}
        for it in self._query(PENDING, ProjectionExpression="sk"):
            if it["sk"]["S"] in keys:
                self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": PENDING}, "sk": it["sk"]})

    def _pending_items(self, state: str, limit: int | None = None) -> list[dict]:
        return self._query(PENDING, limit, FilterExpression="#s = :s", ExpressionAttributeNames={"#s": "state"},
                           ExpressionAttributeValues={":s": {"S": state}})

    def pending(self, state: str = "retry", limit: int = 10000) -> list[Pending]:
        return [Pending(it["customer_id"]["S"], from_us(int(it["as_of_us"]["N"])), int(it["attempts"]["N"]),
                        it.get("last_error", {}).get("S"), it["state"]["S"])
                for it in self._pending_items(state, limit)]

    def pending_count(self, state: str = "retry") -> int:
        return len(self._pending_items(state))

    # --- rank rules' cuts -------------------------------------------------------------------
    def set_rank_threshold(self, alert_type: str, value: float, as_of: datetime) -> None:
        t = to_us(as_of)
        try:
            self.ddb.put_item(TableName=self.table, ConditionExpression="attribute_not_exists(pk) OR t <= :t",
                              ExpressionAttributeValues={":t": {"N": str(t)}},
                              Item={"pk": {"S": RANK}, "sk": {"S": alert_type}, "v": {"N": repr(float(value))},
                                    "t": {"N": str(t)}})
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return None      # a later day's cut is already stored

    def rank_threshold(self, alert_type: str) -> float | None:
        item = self.ddb.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": RANK}, "sk": {"S": alert_type}}).get("Item")
        return float(item["v"]["N"]) if item else None
