"""Feast's SQLite online store with batched writes that never go back in time (the embedded profile's store).

Feast's ``SqliteOnlineStore.online_write_batch`` runs one UPSERT statement per feature per row
(~0.8 ms for a 78-feature row, plus Feast's DataFrame -> proto conversion on the push path). This
subclass writes the same rows to the same table in one transaction per call, one multi-row
``INSERT ... VALUES (...), (...) ON CONFLICT DO UPDATE`` statement per entity (all of its features;
the entity key and timestamps bound once), run through one ``executemany``; and it writes a row
only if its clock is not older than the entity's stored one.

Two ways in: Feast's ``online_write_batch`` (``FeatureStore.push``, materialisation), and
``write_encoded`` for rows already in the stored encoding (``features.online_encoding``; the
ingester's ``ingestion.push.FeastPusher`` goes this way, without pandas or Arrow).

The clock is the row's event timestamp (the push row's ``event_timestamp``: the ingester pushes
a customer's state at its clock), to the microsecond. Feast's table keeps ``event_ts`` as whole
epoch seconds, too coarse to order two rows of the same second, so the exact clock lives in a side table
``<table>__clock`` (entity_key, clock_us) in the same database. One transaction per call: (1)
advance each entity's clock (``ON CONFLICT DO UPDATE ... WHERE excluded.clock_us >= clock_us``),
(2) read back the clocks of those entities, (3) write the feature rows of the entities whose
clock now equals the row's. Equal clocks write (a late event re-pushes the row at the customer's
current clock with new values; an idempotent re-push is harmless); only strictly older rows are
skipped. Rows stored before the entity had a clock entry count as older than any push. Step (1)
takes SQLite's write lock, held until the commit, so two processes pushing the same customer
cannot interleave the steps.

Feast's table is untouched in layout and, for writes in clock order, byte for byte what the stock
store writes (``tests/test_feast_online.py``); reads are Feast's own. Configured in
``feature_repo/feature_store.yaml`` as ``type: features.feast_online.BatchedSqliteOnlineStore``.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Literal

from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _quote_id, _table_id

from .online_encoding import EncodedRow, encode_feast_rows

TYPE = "features.feast_online.BatchedSqliteOnlineStore"
_KEYS_PER_SELECT = 500           # entity keys per clock read-back (SQLite's bound-variable limit)
_FEATURES_PER_STATEMENT = 2000   # (2 parameters each) under SQLite's 32,766 bound variables


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["features.feast_online.BatchedSqliteOnlineStore"] = TYPE  # type: ignore[assignment]


def clock_table(name: str) -> str:
    return f"{name}__clock"


def _sqlite_time(row_time: datetime | None):
    """What sqlite3 stores for a Feast naive-UTC datetime parameter: the adapter Feast's module
    registers (epoch seconds), looked up rather than copied."""
    if row_time is None:
        return None
    adapt = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol))
    return row_time.isoformat(" ") if adapt is None else adapt(row_time)


def _upsert(table: str, names: tuple[str, ...]) -> str:
    """One entity's features in one statement: ?1 key, ?2 event_ts, ?3 created_ts, then value/text pairs."""
    rows = ", ".join(f"(?1, '{n.replace(chr(39), chr(39) * 2)}', ?{2 * i + 4}, ?{2 * i + 5}, ?2, ?3)"
                     for i, n in enumerate(names))
    return (f"INSERT INTO {_quote_id(table)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            f"VALUES {rows} ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts")


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    def online_write_batch(self, config, table, data, progress) -> None:
        store = config.online_store
        if store.vector_enabled or getattr(store, "enable_openai_compatible_store", False):
            return super().online_write_batch(config, table, data, progress)   # columns we do not batch
        self.write_encoded(config, table, encode_feast_rows(data, config.entity_key_serialization_version))
        if progress:
            progress(len(data))

    def write_encoded(self, config, table, rows: list[EncodedRow]) -> int:
        """Write encoded rows (at most one per entity) unless older than the stored ones; returns
        the number of rows written."""
        if not rows:
            return 0
        store = config.online_store
        if store.vector_enabled or getattr(store, "enable_openai_compatible_store", False):
            raise ValueError("write_encoded: vector or value_num columns are written by Feast's online_write_batch")
        conn = self._get_conn(config)
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        clock = _quote_id(clock_table(name))
        advance = (f"INSERT INTO {clock} (entity_key, clock_us) VALUES (?, ?) ON CONFLICT(entity_key) "
                   f"DO UPDATE SET clock_us = excluded.clock_us WHERE excluded.clock_us >= {clock}.clock_us")
        with conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {clock} (entity_key BLOB PRIMARY KEY, clock_us INTEGER NOT NULL)")
            conn.executemany(advance, [(r.key, r.clock_us) for r in rows])
            stored: dict[bytes, int] = {}
            keys = [r.key for r in rows]
            for i in range(0, len(keys), _KEYS_PER_SELECT):
                chunk = keys[i:i + _KEYS_PER_SELECT]
                stored.update(conn.execute(f"SELECT entity_key, clock_us FROM {clock} WHERE entity_key IN "
                                           f"({', '.join('?' * len(chunk))})", chunk).fetchall())
            fresh = [r for r in rows if stored.get(r.key) == r.clock_us]
            by_names: dict[tuple, list] = {}
            for r in fresh:
                head = [r.key, _sqlite_time(r.event_time()), _sqlite_time(r.created_time())]
                for lo in range(0, len(r.names), _FEATURES_PER_STATEMENT):
                    names = r.names[lo:lo + _FEATURES_PER_STATEMENT]
                    by_names.setdefault(names, []).append(head + r.flat[2 * lo:2 * (lo + len(names))])
            for names, params in by_names.items():
                conn.executemany(_upsert(name, names), params)
        return len(fresh)

    def update(self, config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial):
        super().update(config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial)
        conn = self._get_conn(config)
        versioning = config.registry.enable_online_feature_view_versioning
        for table in tables_to_delete:   # a view's clocks go with its table
            conn.execute(f"DROP TABLE IF EXISTS {_quote_id(clock_table(_table_id(config.project, table, versioning)))}")
        conn.commit()
