"""The Lambda handler for the Kinesis event source mapping (partial batch responses).

``Ingester(state_store, pusher, dead_letters, hook).handle(event, context)`` processes one
invocation and returns ``{"batchItemFailures": [{"itemIdentifier": <sequenceNumber>}, ...]}``
(Powertools ``BatchProcessor`` for Kinesis). The deployed entry point, which builds one from the
function's environment with the scoring hook, is ``mhp.lambdas.ingest_handler``.

Two phases, both inside the Powertools processor:

1. per record (Powertools record handler): decode and validate (``ingestion.records``).
   Permanent failures are dead-lettered (acknowledged, never retried); so is any unexpected
   error while decoding (the same bytes would fail the same way on every retry).
2. per invocation: group the good customer records by customer; read the shard's tick horizon;
   for each attempt, load the items (one read for all), catch each state up to the horizon and
   apply its records (``ingestion.engine``: exactly once by event_id, in any arrival order
   within the allowed lateness), save the items where events were applied with a version check
   (one write for all; tick-only changes are pushed, never written), push the saved and
   tick-only customers' rows (one push), raise the shard's tick horizon to the batch's latest
   tick, and verify (one read of the pushed customers' versions and the horizons). Customers
   whose save conflicted, or whose version or horizon moved while their row was being pushed
   (a concurrent writer), go round again, up to ``max_attempts``: so the last row pushed for a
   customer is that of its latest version, whichever writer pushes last.

What is retried (reported in batchItemFailures, Lambda redelivers from the lowest one) vs
dead-lettered (acknowledged):

* dead-lettered: bad base64, oversized, bad JSON (incl. not UTF-8, nesting too deep), unknown
  type, missing fields, wrong types, naive or far-future timestamps (relative to
  approximateArrivalTimestamp), bad envelope fields, partition key mismatch, malformed ticks,
  events older than the allowed lateness (``too_late``) -- the same bytes would fail again.
  Each record's letter is written once: a redelivered batch finds it recorded in the state store;
* retried: state-store errors or conflicts that persist after ``max_attempts``, push failures,
  dead-letter destination failures -- transient. All records of an affected customer are
  reported (never a later record without the earlier one), other customers are unaffected.

Order of side effects per customer: save, then push. A crash after the save and before the
push: the redelivered records are duplicates, and a customer with duplicates in a batch is
pushed again (its current row), so a saved state never stays unpushed. A crash before the save
changes nothing: the redelivered records are applied again.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

from features import state as S

from . import engine
from .dead_letters import DeadLetterSink, letter, letter_id
from .hooks import NoOpScoringHook, ScoringHook
from .push import Pusher
from .records import (
    FUTURE_TOLERANCE_US,
    MAX_RECORD_BYTES,
    DeadLetter,
    Decoded,
    decode,
    from_us,
    horizon_key,
    shard_id,
)
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
                 stage_hook: Callable[[str], None] | None = None,
                 allowed_lateness_days: int = engine.ALLOWED_LATENESS_DAYS):
        self.store = state_store
        self.pusher = pusher
        self.dead_letters = dead_letters
        self.hook = hook or NoOpScoringHook()
        self.max_record_bytes = max_record_bytes
        self.future_tolerance_us = future_tolerance_us
        self.max_attempts = max_attempts
        # an event whose UTC day is this many days or more before its customer's clock is too late
        self.lateness_days = engine.check_lateness(allowed_lateness_days)
        self.metrics = metrics or Metrics(namespace="MarketplaceHealth", service="ingestion")
        self.emit_metrics = emit_metrics
        self.stage_hook = stage_hook or (lambda stage: None)   # fault injection: raise at "after_save"/"after_push"
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
        kinesis = record.raw_event.get("kinesis")
        if not isinstance(kinesis, dict):
            return _Dead("bad_envelope", f"kinesis: expected an object, got {type(kinesis).__name__}", {})
        try:
            return decode(kinesis, self.max_record_bytes, self.future_tolerance_us)
        except DeadLetter as dl:
            return _Dead(dl.reason, dl.detail, kinesis)
        except Exception as exc:  # noqa: BLE001 - bad bytes that broke the decoder: the same on every retry
            return _Dead("undecodable", f"{type(exc).__name__} while decoding: {str(exc)[:500]}", kinesis)

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
                shard = shard_id(raw) or None
                dead.append((id(raw), letter(value.reason, value.detail, value.kinesis, shard, letter_id(raw))))
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
        outcomes = self._apply_all(by_customer, shard_of, failed)

        raws = None
        for cid, out in outcomes.items():
            if not out.too_late:
                continue
            raws = raws or {id(raw): raw for _, _, raw in results}
            raw_of = {id(d): raw_id for raw_id, d in by_customer[cid]}
            for r, why in out.too_late:
                raw_id = raw_of[id(r)]
                raw = raws[raw_id]
                dead.append((raw_id, letter("too_late", f"event {r.event_id} at {from_us(r.ts_us).isoformat()} of "
                                            f"customer {cid} is too late: {why}", raw.get("kinesis") or {},
                                            shard_id(raw), letter_id(raw))))
        if dead:
            self._dead_letter(dead, failed)
        self._trigger(outcomes)
        inv["failed"] += len(failed)
        return failed

    def _dead_letter(self, dead: list[tuple[int, dict]], failed: dict[int, BaseException]) -> None:
        """Write each record's dead letter once: a redelivered batch (Lambda retries from the lowest
        failed record, bad ones after it included) finds its letters recorded in the state store and
        does not write them again. Checked before and recorded after the write, so a crash in between
        can repeat a letter but never lose one."""
        inv = self._inv
        try:
            ids = [d["letter_id"] for _, d in dead if d["letter_id"] is not None]
            known = self.store.recorded_dead_letters(ids) if ids else set()
            new = [d for _, d in dead if d["letter_id"] is None or d["letter_id"] not in known]
            self.dead_letters.put_many(new)
        except Exception as exc:  # noqa: BLE001 - the destination is down: retry these records
            logger.exception("dead-letter destination failed")
            for raw_id, _ in dead:
                failed[raw_id] = TransientError(f"dead-letter destination failed: {exc}")
            return
        for _, d in dead:
            inv[f"dead_letter:{d['reason']}"] += 1
        inv["dead_letters_repeated"] += len(dead) - len(new)
        for d in new:
            logger.warning("dead-lettered record", extra={"reason": d["reason"], "detail": d["detail"][:300],
                                                          "sequence_number": d["sequence_number"]})
        try:
            self.store.record_dead_letters([d["letter_id"] for d in new if d["letter_id"] is not None])
        except Exception:  # noqa: BLE001 - the letters are written; a redelivery may write them again
            logger.exception("recording the dead letters failed")

    def _apply_all(self, by_customer: dict[str, list[tuple[int, Decoded]]], shard_of: dict[str, str],
                   failed: dict[int, BaseException]):
        """Per attempt: load, apply, save (version check), push the saved and tick-only rows, raise
        the tick horizons, then verify. A customer goes round again if its save conflicted, or if
        after the push its stored version or its shard's horizon moved (another writer saved a newer
        state, or ticked past this row, while this one was being pushed): so the last row pushed for
        a customer is always that of its latest version at the latest horizon (see the module doc)."""
        inv = self._inv
        outcomes: dict[str, engine.Outcome] = {}     # the attempt that applied (or found nothing to save)
        pending = list(by_customer)
        horizons: dict[str, int] = {}
        for attempt in range(self.max_attempts):
            if not pending:
                break
            pushed: list[Item] = []
            try:
                if attempt == 0:
                    horizons = self.store.get_tick_horizons({shard_of[c] for c in pending})
                items = self.store.load_many(pending)
                attempt_out: dict[str, engine.Outcome] = {}
                by_cid: dict[str, Item] = {}
                for cid in pending:
                    item = by_cid[cid] = items.get(cid) or Item(cid)
                    attempt_out[cid] = engine.apply_records(item, [d for _, d in by_customer[cid]],
                                                            horizons.get(shard_of[cid]), self.lateness_days)
                to_save = [by_cid[c] for c, o in attempt_out.items() if o.must_save]
                conflicts = self.store.save_many(to_save) if to_save else set()
                self.stage_hook("after_save")
                pushed = [by_cid[c] for c, o in attempt_out.items() if c not in conflicts and o.must_push]
                if pushed:
                    snapshot = S.snapshot
                    self.pusher.push([(it.customer_id, it.state["clock"], snapshot(it.state)) for it in pushed])
                    inv["pushes"] += 1
                    inv["pushed_rows"] += len(pushed)
                self.stage_hook("after_push")
                self.store.release([by_cid[c] for c, o in attempt_out.items() if not o.must_save and by_cid[c].version])
            except Exception as exc:  # noqa: BLE001 - store/push failure: every pending customer is retried
                logger.exception("state store or push failed", extra={"customers": len(pending)})
                for cid in pending:
                    for raw_id, _ in by_customer[cid]:
                        failed[raw_id] = TransientError(f"state store or push failed: {exc}")
                inv["transient_errors"] += 1
                return outcomes
            done = []
            for cid, out in attempt_out.items():
                if cid in conflicts or cid in outcomes:
                    continue
                outcomes[cid] = out
                done.append(cid)
                inv["applied"] += out.applied
                inv["late_applied"] += out.late_applied
                inv["duplicates"] += out.duplicates
                inv["ticks"] += out.ticks
                inv["tick_noops"] += out.tick_noops
                inv["caught_up"] += out.caught_up
                inv["saved"] += out.must_save
            inv["conflicts"] += len(conflicts)
            self._raise_horizons(by_customer, shard_of, {c: attempt_out[c] for c in done}, horizons, failed)
            stale = self._verify(pushed, shard_of, horizons, by_customer, failed) if pushed else set()
            inv["repushed"] += len(stale)
            pending = [cid for cid in pending if cid in conflicts or cid in stale]
        for cid in pending:   # still conflicting (or overtaken) after max_attempts
            for raw_id, _ in by_customer[cid]:
                failed[raw_id] = TransientError(f"customer {cid}: version conflict after {self.max_attempts} attempts")
        return outcomes

    def _verify(self, pushed: list[Item], shard_of, horizons: dict[str, int], by_customer, failed) -> set[str]:
        """After a push: the customers whose stored version or shard horizon moved past the row
        just pushed (one read of versions, one of horizons). ``horizons`` is updated in place."""
        try:
            versions = self.store.versions([it.customer_id for it in pushed])
            before = dict(horizons)
            horizons.update(self.store.get_tick_horizons({shard_of[it.customer_id] for it in pushed}))
        except Exception as exc:  # noqa: BLE001 - cannot tell whether the rows are current: retry them
            logger.exception("state store read after the push failed")
            for it in pushed:
                for raw_id, _ in by_customer[it.customer_id]:
                    failed[raw_id] = TransientError(f"state store read after the push failed: {exc}")
            return set()
        moved = {k for k, h in horizons.items() if h != before.get(k)}   # the states were caught up to `before`
        return {it.customer_id for it in pushed
                if versions.get(it.customer_id, 0) != it.version
                or (shard_of[it.customer_id] in moved
                    and S.last_tick_before(it.state, horizons[shard_of[it.customer_id]]) is not None)}

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
