"""Feast's SQLite online store with batched writes that never go back in time (the embedded profile's store).

Feast's ``SqliteOnlineStore.online_write_batch`` runs one unconditional UPSERT statement per
feature per row (~0.8 ms for a 67-feature row); this subclass sends the same rows to the same
table with one ``executemany`` per batch, and writes a row only if its clock is not older than
the entity's stored one.

The clock is the row's event timestamp (the push row's ``event_timestamp``: the ingester pushes
a customer's state at its clock), to the microsecond. Feast's table keeps ``event_ts`` as whole
epoch seconds, too coarse to order two rows of the same second, so the exact clock lives in a
side table ``<table>__clock`` (entity_key, clock_us) in the same database. One transaction per
push: (1) advance each entity's clock (``ON CONFLICT DO UPDATE ... WHERE excluded.clock_us >=
clock_us``), (2) write the feature rows of the entities whose clock now equals the row's
(``INSERT ... SELECT ... WHERE ? = (SELECT clock_us ...)``). Equal clocks write (a late event
re-pushes the row at the customer's current clock with new values; an idempotent re-push is
harmless); only strictly older rows are skipped. Rows stored before the entity had a clock
entry count as older than any push. Writers are serialised by SQLite's write lock, so two
processes pushing the same customer cannot interleave steps (1) and (2).

Feast's table is untouched in layout and, for writes in clock order, byte for byte what the stock
store writes (``tests/test_feast_online.py``); reads are Feast's own. Configured in
``feature_repo/feature_store.yaml`` as ``type: features.feast_online.BatchedSqliteOnlineStore``.
"""
from __future__ import annotations

from typing import Literal

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _quote_id, _table_id
from feast.utils import to_naive_utc

TYPE = "features.feast_online.BatchedSqliteOnlineStore"
_EPOCH_US = 1_000_000


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["features.feast_online.BatchedSqliteOnlineStore"] = TYPE  # type: ignore[assignment]


def clock_table(name: str) -> str:
    return f"{name}__clock"


def _clock_us(timestamp) -> int:
    naive = to_naive_utc(timestamp)
    days = naive.toordinal() - 719163        # 1970-01-01; integer arithmetic: exact microseconds
    return ((days * 86_400 + naive.hour * 3600 + naive.minute * 60 + naive.second) * _EPOCH_US
            + naive.microsecond)


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    def online_write_batch(self, config, table, data, progress) -> None:
        store = config.online_store
        if store.vector_enabled or getattr(store, "enable_openai_compatible_store", False):
            return super().online_write_batch(config, table, data, progress)   # columns we do not batch
        conn = self._get_conn(config)
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        clock = _quote_id(clock_table(name))
        advance = (f"INSERT INTO {clock} (entity_key, clock_us) VALUES (?, ?) ON CONFLICT(entity_key) "
                   f"DO UPDATE SET clock_us = excluded.clock_us WHERE excluded.clock_us >= {clock}.clock_us;")
        write = (f"INSERT INTO {_quote_id(name)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
                 f"SELECT ?, ?, ?, ?, ?, ? WHERE ? = (SELECT clock_us FROM {clock} WHERE entity_key = ?) "
                 "ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
                 "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
                 "created_ts = excluded.created_ts;")
        version = config.entity_key_serialization_version
        clocks, rows = [], []
        for entity_key, values, timestamp, created_ts in data:
            key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            ts = to_naive_utc(timestamp)
            cts = None if created_ts is None else to_naive_utc(created_ts)
            us = _clock_us(timestamp)
            clocks.append((key, us))
            for feature, val in values.items():
                rows.append((key, feature, val.SerializeToString(), extract_text_and_num(val, False)[0], ts, cts,
                             us, key))
        with conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {clock} (entity_key BLOB PRIMARY KEY, clock_us INTEGER NOT NULL)")
            conn.executemany(advance, clocks)
            conn.executemany(write, rows)
        if progress:
            progress(len(data))

    def update(self, config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial):
        super().update(config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial)
        conn = self._get_conn(config)
        versioning = config.registry.enable_online_feature_view_versioning
        for table in tables_to_delete:   # a view's clocks go with its table
            conn.execute(f"DROP TABLE IF EXISTS {_quote_id(clock_table(_table_id(config.project, table, versioning)))}")
        conn.commit()
