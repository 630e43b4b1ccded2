"""Pushing customers' latest feature rows to the Feast online store.

One call per feature view per invocation: every changed customer's row (``snapshot`` of its
state at its clock, event time = the clock) goes to each feature view fed by the push source
``customer_features_push`` (what ``FeatureStore.push(..., to=PushMode.ONLINE)`` writes), in the
online store's own encoding (``features.online_encoding``: no DataFrame, no Arrow) and one
batched write (``write_encoded`` of the project's online stores; Feast's ``online_write_batch``
for any other store). The project's online stores write a row only if its clock is not older than
the stored one (equal clocks write: a late event changes the row at the same clock); the handler
sends one row per customer, its latest, and re-pushes when a concurrent writer saved a newer
version meanwhile (``ingestion.handler``).

The push source's views are resolved from the registry once per pusher (a registry change is
picked up by a new pusher, e.g. a new Lambda container or ``mhp ingest`` run).
"""
from __future__ import annotations

import threading
from typing import Protocol

from features import catalog as C

from .records import from_us

PUSH_SOURCE = f"{C.CUSTOMER_VIEW}_push"


class Pusher(Protocol):
    def push(self, rows: list[tuple[str, int, dict]]) -> None:
        """rows: (customer_id, clock_us, features) -- at most one row per customer."""


class FeastPusher:
    """The rows of a push, written to every view of ``push_source`` in one batched call per view."""

    def __init__(self, store, push_source: str = PUSH_SOURCE):
        self.store = store
        self.push_source = push_source
        self.calls = 0
        self.rows = 0
        self._targets = None

    def _resolve(self) -> list:
        from feast.data_source import PushSource

        from features.online_encoding import RowEncoder  # lazy: Feast's protos load only when a store is used

        if self._targets is None:
            store = self.store
            views = [fv for fv in store.list_feature_views(allow_cache=True)
                     if isinstance(fv.stream_source, PushSource) and fv.stream_source.name == self.push_source]
            if not views:
                raise ValueError(f"push source {self.push_source!r}: no feature view of project "
                                 f"{store.project!r} is fed by it (run the feature apply first)")
            version = store.config.entity_key_serialization_version
            self._targets = [(fv, RowEncoder(fv, version)) for fv in views if fv.online]
        return self._targets

    def push(self, rows: list[tuple[str, int, dict]]) -> None:
        if not rows:
            return
        provider = self.store._get_provider()
        online, config = provider.online_store, self.store.config
        for view, encoder in self._resolve():
            encoded = encoder.encode(rows)
            if hasattr(online, "write_encoded"):
                online.write_encoded(config, view, encoded)
            else:   # another online store: Feast's own row form
                provider.online_write_batch(config, view, [r.to_feast(encoder.entity_key(cid))
                                                           for r, (cid, _, _) in zip(encoded, rows)], None)
        self.calls += 1
        self.rows += len(rows)


__all__ = ["FeastPusher", "Pusher", "PUSH_SOURCE", "from_us"]


class MemoryPusher:
    """An in-process online table with the online stores' write semantics: a row replaces the
    stored one unless its clock is older.

    For runs without a Feast repo (benchmarks of the state path, property tests): ``table``
    maps customer_id -> (clock_us, features) exactly as the last push left it.
    """

    def __init__(self):
        self.table: dict[str, tuple[int, dict]] = {}
        self.calls = 0
        self.rows = 0
        self._lock = threading.Lock()     # the compare and the put are one step, as in the stores

    def push(self, rows: list[tuple[str, int, dict]]) -> None:
        if not rows:
            return
        table = self.table
        with self._lock:
            for cid, clock, feats in rows:
                old = table.get(cid)
                if old is None or clock >= old[0]:
                    table[cid] = (clock, dict(feats))
            self.calls += 1
            self.rows += len(rows)
