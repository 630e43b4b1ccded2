"""The Lambda handler for the Kinesis event source mapping (partial batch responses).

``Ingester(state_store, pusher, dead_letters, hook).handle(event, context)`` processes one
invocation and returns ``{"batchItemFailures": [{"itemIdentifier": <sequenceNumber>}, ...]}``
(Powertools ``BatchProcessor`` for Kinesis). ``lambda_handler`` is the deployed entry point.

Two phases, both inside the Powertools processor:

1. per record (Powertools record handler): decode and validate (``ingestion.records``).
   Permanent failures are dead-lettered (acknowledged, never retried).
2. per invocation: group the good customer records by customer; read the shard's tick horizon;
   for each attempt, load the items (one read for all), catch each state up to the horizon and
   apply its records (``ingestion.engine``), push the changed customers' latest rows (one
   push), save the items where events were applied with a version check (one write for all;
   tick-only changes are pushed, never written). Customers whose save conflicted (a concurrent
   writer) are re-read and re-applied, up to ``max_attempts``. Finally the shard's tick horizon
   is raised to the latest tick midnight of the batch.

What is retried (reported in batchItemFailures, Lambda redelivers from the lowest one) vs
dead-lettered (acknowledged):

* dead-lettered: bad base64, oversized, bad JSON, unknown type, missing fields, wrong types,
  naive or far-future timestamps (relative to approximateArrivalTimestamp), partition key
  mismatch, malformed ticks, late events -- the same bytes would fail again;
* retried: state-store errors or conflicts that persist after ``max_attempts``, push failures,
  dead-letter destination failures -- transient. All records of an affected customer are
  reported (never a later record without the earlier one), other customers are unaffected.

Order of side effects per customer: push, then save (``pushed_clock`` = the saved clock). A
crash after the push and before the save leaves the state untouched: the redelivered records
are re-applied, giving the same row, pushed again (idempotent). A crash after the save: the
redelivered records are duplicates; any customer of a batch whose stored ``clock >
pushed_clock`` is re-pushed regardless (so a saved-but-unpushed state can never stay stale).
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from features import state as S
from features.store import open_store

from . import engine
from .dead_letters import DeadLetterSink, SQSDeadLetters, letter
from .hooks import NoOpScoringHook, ScoringHook
from .push import FeastPusher, Pusher
from .records import FUTURE_TOLERANCE_US, MAX_RECORD_BYTES, DeadLetter, Decoded, decode, from_us, horizon_key
from .dynamodb_state_store import DynamoDBStateStore
from .state_codec import Item
from .state_store import StateStore

logger = Logger(service="mhp-ingestion")


class TransientError(RuntimeError):
    """A failure that a retry can fix; the record is reported in batchItemFailures."""


class _Dead:
    __slots__ = ("reason", "detail", "kinesis")

    def __init__(self, reason: str, detail: str, kinesis: dict):
        self.reason, self.detail, self.kinesis = reason, detail, kinesis


class _Processor(BatchProcessor):
    """Powertools' Kinesis processor with an invocation-level phase after the per-record one."""

    def __init__(self, ingester: "Ingester"):
        super().__init__(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
        self.ingester = ingester

    def process(self) -> list[tuple]:
        results = [self._process_record(r) for r in self.records]
        failed = self.ingester._commit(results)   # raw record id -> exception
        if failed:
            self.success_messages = [m for m in self.success_messages if id(m) not in failed]
            for raw in self.records:
                exc = failed.get(id(raw))
                if exc is not None:
                    data = self._to_batch_type(raw, self.event_type, self.model)
                    self.failure_handler(data, (type(exc), exc, None))
        return results


class Ingester:
    def __init__(self, state_store: StateStore, pusher: Pusher, dead_letters: DeadLetterSink,
                 hook: ScoringHook | None = None, *, max_record_bytes: int = MAX_RECORD_BYTES,
                 future_tolerance_us: int = FUTURE_TOLERANCE_US, max_attempts: int = 5,
                 metrics: Metrics | None = None, emit_metrics: bool = False,
                 stage_hook: Callable[[str], None] | None = None):
        self.store = state_store
        self.pusher = pusher
        self.dead_letters = dead_letters
        self.hook = hook or NoOpScoringHook()
        self.max_record_bytes = max_record_bytes
        self.future_tolerance_us = future_tolerance_us
        self.max_attempts = max_attempts
        self.metrics = metrics or Metrics(namespace="MarketplaceHealth", service="ingestion")
        self.emit_metrics = emit_metrics
        self.stage_hook = stage_hook or (lambda stage: None)   # fault injection: raise at "after_push"/"after_save"
        self.totals: Counter = Counter()
        self._inv: Counter = Counter()

    # ------------------------------------------------------------------ entry point
    def handle(self, event: dict, context: Any = None) -> dict:
        self._inv = Counter()
        try:
            return process_partial_response(event=event, record_handler=self._decode_one,
                                            processor=_Processor(self), context=context)
        finally:
            self._publish()

    def _decode_one(self, record) -> Decoded | _Dead:
        kinesis = record.raw_event.get("kinesis") or {}
        try:
            return decode(kinesis, self.max_record_bytes, self.future_tolerance_us)
        except DeadLetter as dl:
            return _Dead(dl.reason, dl.detail, kinesis)

    # ------------------------------------------------------------------ invocation phase
    def _commit(self, results: list[tuple]) -> dict[int, BaseException]:
        inv = self._inv
        failed: dict[int, BaseException] = {}
        dead: list[tuple[int, dict]] = []
        by_customer: dict[str, list[tuple[int, Decoded]]] = {}
        shard_of: dict[str, str] = {}
        n_tutor = 0
        inv["records"] += len(results)
        for status, value, raw in results:
            if status != "success":            # unexpected error in decoding: retry it
                failed[id(raw)] = TransientError(str(value))
                continue
            if isinstance(value, _Dead):
                shard = (raw.get("eventID") or "").split(":", 1)[0] or None
                dead.append((id(raw), letter(value.reason, value.detail, value.kinesis, shard)))
            elif value.kind == "tutor":
                n_tutor += 1                   # batch path only: the offline event log has it
            else:
                recs = by_customer.get(value.key)
                if recs is None:
                    recs = by_customer[value.key] = []
                    shard_of[value.key] = horizon_key(raw)
                recs.append((id(raw), value))

        if n_tutor:
            inv["tutor_events"] += n_tutor
        outcomes, late_raw = self._apply_all(by_customer, shard_of, failed)

        raws = None
        for cid, out in outcomes.items():
            for r in out.late:
                raws = raws or {id(raw): raw for _, _, raw in results}
                raw_id = late_raw[(cid, r.seq, r.event_id)]
                raw = raws[raw_id]
                dead.append((raw_id, letter("late", f"event {r.event_id} at {from_us(r.ts_us).isoformat()} is older "
                                            f"than customer {cid}'s watermark and not a known redelivery",
                                            raw.get("kinesis") or {}, (raw.get("eventID") or "").split(":", 1)[0])))
        if dead:
            try:
                self.dead_letters.put_many([d for _, d in dead])
                for _, d in dead:
                    inv[f"dead_letter:{d['reason']}"] += 1
                    logger.warning("dead-lettered record", extra={"reason": d["reason"], "detail": d["detail"][:300],
                                                                  "sequence_number": d["sequence_number"]})
            except Exception as exc:  # noqa: BLE001 - the destination is down: retry these records
                logger.exception("dead-letter destination failed")
                for raw_id, _ in dead:
                    failed[raw_id] = TransientError(f"dead-letter destination failed: {exc}")
        self._trigger(outcomes)
        inv["failed"] += len(failed)
        return failed

    def _apply_all(self, by_customer: dict[str, list[tuple[int, Decoded]]], shard_of: dict[str, str],
                   failed: dict[int, BaseException]):
        inv = self._inv
        outcomes: dict[str, engine.Outcome] = {}
        late_raw: dict[tuple, int] = {}
        pending = list(by_customer)
        horizons: dict[str, int] | None = None
        for attempt in range(self.max_attempts):
            if not pending:
                break
            try:
                if horizons is None:
                    horizons = self.store.get_tick_horizons(set(shard_of.values())) if pending else {}
                items = self.store.load_many(pending)
                attempt_out: dict[str, engine.Outcome] = {}
                to_push: list[Item] = []
                to_save: list[Item] = []
                unsaved: list[Item] = []
                for cid in pending:
                    item = items.get(cid) or Item(cid)
                    out = engine.apply_records(item, [d for _, d in by_customer[cid]], horizons.get(shard_of[cid]))
                    attempt_out[cid] = out
                    if out.changed or engine.needs_push(item):
                        to_push.append(item)
                    (to_save if out.must_save else unsaved).append(item)
                snapshot = S.snapshot
                rows = [(it.customer_id, it.state["clock"], snapshot(it.state)) for it in to_push]
                if rows:
                    self.pusher.push(rows)
                    inv["pushes"] += 1
                    inv["pushed_rows"] += len(rows)
                self.stage_hook("after_push")
                for it in to_push:
                    it.pushed_clock = it.state["clock"]
                conflicts = self.store.save_many(to_save) if to_save else set()
                self.stage_hook("after_save")
                self.store.release([it for it in unsaved if it.version])
            except Exception as exc:  # noqa: BLE001 - store/push failure: every pending customer is retried
                logger.exception("state store or push failed", extra={"customers": len(pending)})
                for cid in pending:
                    for raw_id, _ in by_customer[cid]:
                        failed[raw_id] = TransientError(f"state store or push failed: {exc}")
                inv["transient_errors"] += 1
                return outcomes, late_raw
            for cid, out in attempt_out.items():
                if cid in conflicts:
                    continue
                outcomes[cid] = out
                inv["applied"] += out.applied
                inv["duplicates"] += out.duplicates
                inv["ticks"] += out.ticks
                inv["tick_noops"] += out.tick_noops
                inv["caught_up"] += out.caught_up
                inv["saved"] += out.must_save
                for raw_id, d in by_customer[cid]:
                    late_raw[(cid, d.seq, d.event_id)] = raw_id
            inv["conflicts"] += len(conflicts)
            pending = [cid for cid in pending if cid in conflicts]
        for cid in pending:   # still conflicting after max_attempts
            for raw_id, _ in by_customer[cid]:
                failed[raw_id] = TransientError(f"customer {cid}: version conflict after {self.max_attempts} attempts")
        self._raise_horizons(by_customer, shard_of, outcomes, horizons or {}, failed)
        return outcomes, late_raw

    def _raise_horizons(self, by_customer, shard_of, outcomes, horizons, failed) -> None:
        """After the ticked rows are online: record the latest tick midnight per shard, so later
        loads catch states up to it (ticks themselves are never written to items)."""
        latest: dict[str, int] = {}
        for cid, out in outcomes.items():
            k = shard_of[cid]
            if out.max_tick is not None and out.max_tick > max(latest.get(k, -1), horizons.get(k, -1)):
                latest[k] = out.max_tick
        for k, m in latest.items():
            try:
                self.store.raise_tick_horizon(k, m)
            except Exception as exc:  # noqa: BLE001 - retry the ticked customers' records (ticks are idempotent)
                logger.exception("tick horizon write failed")
                for cid, out in outcomes.items():
                    if shard_of[cid] == k and out.max_tick is not None:
                        for raw_id, _ in by_customer[cid]:
                            failed[raw_id] = TransientError(f"tick horizon write failed: {exc}")

    def _trigger(self, outcomes: dict[str, engine.Outcome]) -> None:
        hot = sorted(cid for cid, o in outcomes.items() if o.high_signal_ts is not None)
        if not hot:
            return
        as_of = from_us(max(outcomes[c].high_signal_ts for c in hot))
        try:
            self.hook.on_high_signal(hot, as_of)
            self._inv["scored_customers"] += len(hot)
        except Exception:  # noqa: BLE001 - scoring is best effort; the features are stored
            logger.exception("scoring hook failed", extra={"customers": len(hot)})
            self._inv["scoring_hook_errors"] += 1

    def _publish(self) -> None:
        inv = self._inv
        self.totals.update(inv)
        for name, n in inv.items():
            if n:
                metric = "DeadLetters_" + name.split(":", 1)[1] if name.startswith("dead_letter:") else \
                    "".join(p.capitalize() for p in name.split("_"))
                self.metrics.add_metric(name=metric, unit=MetricUnit.Count, value=n)
        dl = sum(n for k, n in inv.items() if k.startswith("dead_letter:"))
        if dl:
            self.metrics.add_metric(name="DeadLetters", unit=MetricUnit.Count, value=dl)
        if self.emit_metrics:
            self.metrics.flush_metrics()
        else:
            self.metrics.clear_metrics()


def current_states(store: StateStore, customer_ids, shard_key: str) -> dict[str, dict]:
    """Customers' states as the handler sees them: the stored item caught up to the shard's tick
    horizon (ticks are applied lazily, never written)."""
    horizon = store.get_tick_horizons([shard_key]).get(shard_key)
    items = store.load_many(customer_ids)
    for it in items.values():
        S.catch_up(it.state, horizon)
    return {c: it.state for c, it in items.items()}


# ---------------------------------------------------------------------- the deployed entry point
_INGESTER: Ingester | None = None


def build_from_env() -> Ingester:
    """The AWS deployment: MHP_STATE_TABLE (DynamoDB), MHP_DLQ_URL (SQS), MHP_DATA_URI (s3:// Feast registry)."""


    profile = os.environ.get("MHP_PROFILE", "aws")
    store = open_store(profile, os.environ.get("MHP_STATE_DIR", "/tmp/mhp-feast"), os.environ["MHP_DATA_URI"])
    return Ingester(DynamoDBStateStore(os.environ.get("MHP_STATE_TABLE", "mhp-ingestion-state"), create=False),
                    FeastPusher(store), SQSDeadLetters(os.environ["MHP_DLQ_URL"]), emit_metrics=True)


@logger.inject_lambda_context
def lambda_handler(event: dict, context: Any) -> dict:
    global _INGESTER
    if _INGESTER is None:
        _INGESTER = build_from_env()
    return _INGESTER.handle(event, context)
