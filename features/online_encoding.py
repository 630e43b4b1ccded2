"""Feast's online-store encoding of feature rows, straight from Python values (no pandas, no Arrow).

Feast's push path (``FeatureStore.push`` -> ``write_to_online_store``) turns a DataFrame into Arrow,
then one ``ValueProto`` per value (``feast.utils._convert_arrow_to_proto``), and the online store
serialises each proto again: ~1 ms of CPU for a 78-feature row. ``encode_rows`` produces what the
online stores store -- the serialised entity key, each value's ``ValueProto`` bytes and the
``value_text`` Feast's SQLite store keeps beside it -- in one pass over the rows, and
``EncodedRow.to_feast`` gives back Feast's own row form for any other online store.

Values follow Feast's conversion of the push DataFrame (``feast.type_map``): None and NaN are
null (an empty ``ValueProto``), Float64 -> ``double_val``, Int64 -> ``int64_val``, Bool ->
``bool_val``, String -> ``string_val``; ``value_text`` is ``feast.infra.online_stores.helpers.
extract_text_and_num``'s text. ``tests/test_online_encoding.py`` compares the stored tables byte
for byte with Feast's own push path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Bool, Float32, Float64, Int32, Int64, String

_EPOCH = datetime(1970, 1, 1)
_NULL = (b"", None)
_MEMO_LIMIT = 1 << 16          # distinct values remembered per feature type
_KEYS_LIMIT = 1 << 18          # serialised entity keys remembered


@dataclass(slots=True)
class EncodedRow:
    """One entity's row, encoded: ``flat`` holds value bytes and value text, alternating, in the
    order of ``names``; ``clock_us`` is the row's event time (microseconds since the epoch, UTC)."""

    key: bytes
    clock_us: int
    names: tuple[str, ...]
    flat: list
    created_us: int | None = None

    def event_time(self) -> datetime:
        """The event time as a naive UTC datetime (what Feast's stores derive their columns from)."""
        return _EPOCH + timedelta(microseconds=self.clock_us)

    def created_time(self) -> datetime | None:
        return None if self.created_us is None else _EPOCH + timedelta(microseconds=self.created_us)

    def to_feast(self, entity_key: EntityKeyProto) -> tuple:
        """Feast's ``online_write_batch`` row: (entity key, {name: ValueProto}, event time, created time)."""
        values = {n: ValueProto.FromString(self.flat[2 * i]) for i, n in enumerate(self.names)}
        return entity_key, values, self.event_time(), self.created_time()


def _is_null(v) -> bool:
    """None or a float NaN: what pandas' isnull makes null in a non-float column."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _float(v) -> tuple[bytes, str | None]:
    if v is None or v != v:   # NaN: null, as pandas' isnull
        return _NULL
    x = float(v)
    return ValueProto(double_val=x).SerializeToString(), str(x)


def _int(v) -> tuple[bytes, str | None]:
    if _is_null(v):
        return _NULL
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"an Int64 feature got a fractional value {v!r}")
    x = int(v)
    return ValueProto(int64_val=x).SerializeToString(), str(x)


def _bool(v) -> tuple[bytes, str | None]:
    if _is_null(v):
        return _NULL
    x = bool(v)
    return ValueProto(bool_val=x).SerializeToString(), str(x)


def _string(v) -> tuple[bytes, str | None]:
    if _is_null(v):
        return _NULL
    x = str(v)
    return ValueProto(string_val=x).SerializeToString(), x


class _Memo(dict):
    """Encodings by value for one Feast type. Values that compare equal encode equally within a
    type (1 == 1.0 == True), except a float's zero sign, which is never remembered."""

    def __init__(self, encode: Callable):
        super().__init__()
        self.encode = encode

    def __missing__(self, v):
        hit = self.encode(v)
        if v != 0 or not isinstance(v, float):
            if len(self) >= _MEMO_LIMIT:
                self.clear()
            self[v] = hit
        return hit


_ENCODERS = {Float64: _float, Float32: _float, Int64: _int, Int32: _int, Bool: _bool, String: _string}


def value_encoder(dtype) -> Callable[[object], tuple[bytes, str | None]]:
    """(ValueProto bytes, value_text) of a Python value of the Feast type ``dtype``."""
    try:
        return _ENCODERS[dtype]
    except (KeyError, TypeError):
        raise TypeError(f"no direct online encoding for Feast type {dtype!r}; expected one of "
                        f"{sorted(str(t) for t in _ENCODERS)}") from None


class RowEncoder:
    """Encodes (entity id, clock_us, {feature: value}) rows for one feature view with one string join key."""

    def __init__(self, view, serialization_version: int):
        columns = view.entity_columns
        if len(columns) != 1 or columns[0].dtype != String:
            raise TypeError(f"feature view {view.name!r}: direct online writes need one String join key, "
                            f"got {[(c.name, str(c.dtype)) for c in columns]}")
        self.view_name = view.name
        self.join_key = columns[0].name
        self.version = serialization_version
        self._keys: dict[str, bytes] = {}
        self.names = tuple(f.name for f in view.features)
        memos = {dtype: _Memo(encode) for dtype, encode in _ENCODERS.items()}
        self.memos = []
        for f in view.features:
            value_encoder(f.dtype)   # a clear error for a type without a direct encoding
            self.memos.append(memos[f.dtype])

    def entity_key(self, entity_id: str) -> EntityKeyProto:
        return EntityKeyProto(join_keys=[self.join_key], entity_values=[ValueProto(string_val=entity_id)])

    def encode(self, rows: list[tuple[str, int, dict]]) -> list[EncodedRow]:
        names, pairs, out = self.names, list(zip(self.names, self.memos)), []
        for entity_id, clock_us, values in rows:
            flat = []
            extend = flat.extend
            try:
                for name, memo in pairs:
                    v = values[name]
                    extend(memo[v] if v.__hash__ is not None else memo.encode(v))
            except KeyError as exc:
                if exc.args and exc.args[0] in values:
                    raise
                raise KeyError(f"feature view {self.view_name!r}: the row of {entity_id!r} has no feature "
                               f"{exc.args[0]!r}") from None
            out.append(EncodedRow(self.key_bytes(entity_id), int(clock_us), names, flat))
        return out

    def key_bytes(self, entity_id: str) -> bytes:
        key = self._keys.get(entity_id)
        if key is None:
            if not isinstance(entity_id, str):
                raise TypeError(f"feature view {self.view_name!r}: {self.join_key} must be a string, got {entity_id!r}")
            key = serialize_entity_key(self.entity_key(entity_id), entity_key_serialization_version=self.version)
            if len(self._keys) >= _KEYS_LIMIT:
                self._keys.clear()
            self._keys[entity_id] = key
        return key


def encode_feast_rows(data, serialization_version: int) -> list[EncodedRow]:
    """Feast's ``online_write_batch`` rows (entity key proto, {name: ValueProto}, ts, created_ts) encoded."""
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.utils import to_naive_utc

    def us(t: datetime) -> int:
        return (to_naive_utc(t) - _EPOCH) // timedelta(microseconds=1)

    out = []
    for entity_key, values, timestamp, created_ts in data:
        flat = []
        for val in values.values():
            flat += (val.SerializeToString(), extract_text_and_num(val, False)[0])
        out.append(EncodedRow(serialize_entity_key(entity_key, entity_key_serialization_version=serialization_version),
                              us(timestamp), tuple(values), flat, None if created_ts is None else us(created_ts)))
    return out
