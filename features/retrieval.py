"""Reading the model's input vector, offline (point in time) and online, the same way.

The customer's primary-tutor and own-subject features are second lookups
keyed by the primary tutor and the primary subject as of t (docs/features.md):
first ``primary_tutor_id`` and ``primary_subject`` from the customer view,
then the feature service with that tutor, that subject, the constant
marketplace key and the request time. Every input row comes back, in input
order, with nulls where no value existed yet.

Offline rows may not lie past the feature tables' horizon (``features.backfill.Horizon``: the
backfill's ``until``, by default the midnight after the last event, and the first midnight after
it, where the next decay would be): no snapshot exists there, so Feast would return the horizon's
row unchanged and windows would stop decaying. ``historical_features`` raises
``BeyondHorizonError`` naming the horizon instead; backfill with a later ``until`` to read later
times (the snapshots then decay on to it, as online).
"""
from __future__ import annotations

import weakref

import pandas as pd
from feast import FeatureStore

from . import catalog as C
from .backfill import Horizon, read_horizon

_ROW = "__row"
_TUTOR_KEY = C.LOOKUP_KEYS[C.TUTOR_VIEW]        # primary_tutor_id
_SUBJECT_KEY = C.LOOKUP_KEYS[C.SUBJECT_VIEW]    # primary_subject
_PRIMARY = f"{C.CUSTOMER_VIEW}:{_TUTOR_KEY}"
_SUBJECT = f"{C.CUSTOMER_VIEW}:{_SUBJECT_KEY}"
NO_TUTOR = ""  # join key used when a customer has no primary tutor yet: matches no tutor row
NO_SUBJECT = ""  # likewise for a customer without a primary subject: matches no subject row


class BeyondHorizonError(ValueError):
    """Entity rows after the feature tables' horizon: their values would be stale."""


def horizon(store: FeatureStore) -> Horizon | None:
    """The horizon of the tables behind the customer view (None: tables without a horizon file)."""
    path = store.get_feature_view(C.CUSTOMER_VIEW).batch_source.path
    return read_horizon(path.rsplit("/", 1)[0])


def _check_horizon(store: FeatureStore, entity_df: pd.DataFrame) -> None:
    h = horizon(store)
    if h is None:
        return
    valid_before = pd.Timestamp(h.valid_before)
    late = entity_df["event_timestamp"] >= valid_before
    if late.any():
        latest = entity_df["event_timestamp"].max()
        raise BeyondHorizonError(
            f"entity dataframe: {int(late.sum())} row(s) past the feature horizon: the tables are backfilled "
            f"until {pd.Timestamp(h.until).isoformat()} and exact only before {valid_before.isoformat()}; the "
            f"latest row is at {latest.isoformat()}. Values there would be stale (no decay past the horizon): "
            "backfill with --until at or after the latest row, or drop those rows")


def _check_entity_df(entity_df: pd.DataFrame) -> pd.DataFrame:
    missing = {"customer_id", "event_timestamp"} - set(entity_df.columns)
    if missing:
        raise ValueError(f"entity dataframe: missing column(s) {sorted(missing)}; expected customer_id and "
                         "event_timestamp (timezone-aware UTC)")
    ts = entity_df["event_timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"entity dataframe: event_timestamp must be timezone-aware UTC, got dtype {ts.dtype}")
    if entity_df["customer_id"].isna().any():
        raise ValueError("entity dataframe: customer_id has nulls")
    return entity_df


def historical_features(store: FeatureStore, entity_df: pd.DataFrame) -> pd.DataFrame:
    """``churn_model_v1`` as of each row's ``event_timestamp``; extra input columns are kept.

    Raises ``BeyondHorizonError`` for rows after the feature tables' horizon (see the module doc)."""
    entity_df = _check_entity_df(entity_df)
    _check_horizon(store, entity_df)
    base = entity_df.reset_index(drop=True).copy()
    base[_ROW] = range(len(base))
    keys = base[[_ROW, "customer_id", "event_timestamp"]]
    primary = _in_row_order(store.get_historical_features(keys, features=[_PRIMARY, _SUBJECT]).to_df())
    base["tutor_id"] = primary[_TUTOR_KEY].fillna(NO_TUTOR).astype(str).to_numpy()
    base["subject"] = primary[_SUBJECT_KEY].fillna(NO_SUBJECT).astype(str).to_numpy()
    base["marketplace_id"] = C.MARKETPLACE_KEY
    base[C.REQUEST_TIME_FIELD] = _epoch_us(base["event_timestamp"])
    service = store.get_feature_service(C.FEATURE_SERVICE)
    out = store.get_historical_features(base, features=service).to_df()
    if len(out) != len(base):  # the guarantee we chose the duckdb store for; never drop a row silently
        raise RuntimeError(f"point-in-time join returned {len(out)} rows for {len(base)} entity rows")
    out = _in_row_order(out)
    del out[_ROW]
    out["tutor_id"] = out["tutor_id"].replace(NO_TUTOR, None)
    out["subject"] = out["subject"].replace(NO_SUBJECT, None)
    return out


def _in_row_order(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` in input-row order (the project's offline store already returns that order; Feast's
    stock store does not)."""
    if df[_ROW].is_monotonic_increasing:
        if isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1:
            return df
        return df.reset_index(drop=True)
    return df.sort_values(_ROW).reset_index(drop=True)


def online_features(store: FeatureStore, customer_ids: list[str], request_time: pd.Timestamp) -> pd.DataFrame:
    """``churn_model_v1`` from the online store for ``customer_ids`` at ``request_time``.

    Exactly ``store.get_online_features(features=<the service>, ...).to_df()`` with the primary
    tutor as the tutor key (columns, order and values), read through the fast path below."""
    return pd.DataFrame(online_feature_dict(store, customer_ids, request_time))


def online_feature_rows(store: FeatureStore, customer_ids: list[str], request_time) -> list[dict]:
    """The same vectors as :func:`online_features`, one dict per customer, without pandas (the
    serving hot path: no frame is built). Values are Feast's own Python values (``to_dict``)."""
    data = online_feature_dict(store, customer_ids, request_time)
    names = list(data)
    return [dict(zip(names, vals)) for vals in zip(*data.values())]


def online_feature_dict(store: FeatureStore, customer_ids: list[str], request_time) -> dict[str, list]:
    """Column name -> values: equal to Feast's ``get_online_features(service).to_dict()`` (same keys in
    the same order, same values), ``tutor_id`` / ``subject`` None where the customer has no primary
    tutor / subject."""
    request_us = _request_us(request_time)
    ids = list(customer_ids)
    plan = _plan_for(store)
    if plan is None:  # a shape the fast path does not cover: Feast's own path
        out = _feast_online_dict(store, ids, request_us)
    else:
        out = plan.read(store, ids, request_us)
    out["tutor_id"] = [None if t == NO_TUTOR else t for t in out["tutor_id"]]
    out["subject"] = [None if s == NO_SUBJECT else s for s in out["subject"]]
    return out


def refresh(store: FeatureStore) -> None:
    """Reload the registry now and drop the cached plan (a re-apply in another process is otherwise
    picked up when the registry cache expires, as in Feast's own ``get_online_features``)."""
    store.refresh_registry()
    _PLANS.pop(store, None)


def _request_us(request_time) -> int:
    if getattr(request_time, "tzinfo", None) is None:
        raise ValueError("request_time must be timezone-aware UTC")
    return pd.Timestamp(request_time).value // 1000  # ns since the epoch (UTC) -> us, floored like _epoch_us


def _feast_online_dict(store: FeatureStore, ids: list[str], request_us: int) -> dict[str, list]:
    """The reference: Feast's ``get_online_features`` (primary-tutor lookup, then the service)."""
    if not ids:
        raise ValueError("customer_ids: expected at least one customer id")
    rows = [{"customer_id": c} for c in ids]
    first = store.get_online_features(features=[_PRIMARY, _SUBJECT], entity_rows=rows).to_dict()
    rows = [{"customer_id": c, "tutor_id": t if t is not None else NO_TUTOR,
             "subject": s if s is not None else NO_SUBJECT, "marketplace_id": C.MARKETPLACE_KEY,
             C.REQUEST_TIME_FIELD: request_us}
            for c, t, s in zip(ids, first[_TUTOR_KEY], first[_SUBJECT_KEY])]
    service = store.registry.get_feature_service(C.FEATURE_SERVICE, store.project, allow_cache=True)
    return store.get_online_features(features=service, entity_rows=rows).to_dict()


# --------------------------------------------------------------------------- the fast online path
# Feast's get_online_features re-resolves the service on every call (store.get_feature_service even
# re-reads the registry), converts the response to Arrow/pandas for the on-demand views, and builds
# protos for every value. What does not change per call is resolved once per registry version (the
# plan); a call is then one online_read per view (customer, primary tutor, primary subject,
# marketplace) plus the
# registered on-demand functions on plain lists. Values go through Feast's own decoders
# (feast_value_type_to_python_type, python_values_to_proto_values), so they equal Feast's.
_PLANS: "weakref.WeakKeyDictionary[FeatureStore, _Plan]" = weakref.WeakKeyDictionary()
_SCALAR_VALS = frozenset({"string_val", "int64_val", "int32_val", "double_val", "float_val", "bool_val"})
_SCALAR_TYPES = frozenset({"STRING", "INT64", "INT32", "DOUBLE", "FLOAT", "BOOL"})


def _registry_version(store: FeatureStore):
    """Identity of the registry state, refreshed like Feast's own online path (TTL / file mtime)."""
    reg = store.registry
    get = getattr(reg, "_get_registry_proto", None)
    proto = get(project=store.project, allow_cache=True) if get is not None else reg.proto()
    # file and S3 registry stores stamp a fresh version_id (and last_updated) on every commit,
    # also when an in-process apply mutates the cached proto in place
    return (id(proto), proto.version_id, proto.last_updated.seconds, proto.last_updated.nanos)


def _plan_for(store: FeatureStore) -> "_Plan | None":
    version = _registry_version(store)
    plan = _PLANS.get(store)
    if plan is None or plan.version != version:
        plan = _Plan.build(store, version)
        _PLANS[store] = plan
    return plan if plan.ok else None


class _Plan:
    """The resolved ``churn_model_v1`` for one registry version."""

    def __init__(self, store: FeatureStore, version):
        self.version, self.ok, self.odfv_types = version, False, {}

    @classmethod
    def build(cls, store: FeatureStore, version) -> "_Plan":
        from feast import utils as fu
        from feast.value_type import ValueType

        plan = cls(store, version)
        registry, project = store.registry, store.project
        service = registry.get_feature_service(C.FEATURE_SERVICE, project, allow_cache=True)
        (feature_refs, odfvs, entity_to_join_key, entity_types, _join_keys, grouped_refs, result_names,
         request_data, entityless) = fu._get_online_request_context(registry, project, service, False)
        keys = ("customer_id", "tutor_id", "subject", "marketplace_id")
        views = []
        for view, requested in grouped_refs:
            join = [entity_to_join_key[e] for e in view.entities]
            if len(join) != 1 or join[0] not in keys or view.projection.join_key_map:
                return plan
            types = {f.name: f.dtype.to_value_type() for f in view.features}
            views.append((view, join[0], list(requested), types))
        if entityless or set(request_data) - {C.REQUEST_TIME_FIELD}:
            return plan
        odfv_refs: dict[str, list[str]] = {}
        by_name = {o.projection.name_to_use(): o for o in odfvs}
        for ref in feature_refs:
            view_name, _, name = fu._parse_feature_ref(ref)
            if view_name in by_name:
                odfv_refs.setdefault(view_name, []).append(name)
        ons = []
        for view_name, wanted in odfv_refs.items():
            odfv = by_name[view_name]
            if odfv.mode != "python" or odfv.singleton or odfv.aggregations or odfv.write_to_online_store:
                return plan
            declared = {p.name for p in odfv.source_feature_view_projections.values()}
            ons.append((odfv, set(wanted), declared))
            plan.odfv_types[odfv.name] = {f.name: f.dtype.to_value_type() for f in odfv.schema}
        by_key = {v[1]: v for v in views}
        if len(by_key) != len(views) or "customer_id" not in by_key \
                or not {_TUTOR_KEY, _SUBJECT_KEY} <= set(by_key["customer_id"][3]):
            return plan
        plan.views, plan.odfvs, plan.result_names = views, ons, set(result_names) | set(keys)
        plan.entity_types = {k: entity_types.get(k, ValueType.UNKNOWN) for k in keys}
        plan.customer = by_key["customer_id"]
        plan.ok = True
        return plan

    def read(self, store: FeatureStore, ids: list[str], request_us: int) -> dict[str, list]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.type_map import feast_value_type_to_python_type as to_py
        from feast.type_map import python_values_to_proto_values as to_protos

        if not ids:
            raise ValueError("customer_ids: expected at least one customer id")
        n = len(ids)
        config = store.config
        online = store._get_provider().online_store

        def decode(v, vtype, scalar):
            attr = v.WhichOneof("val")
            if attr is None:
                return None
            # plain scalars come back as the proto field itself, exactly what to_py returns for them
            return getattr(v, attr) if scalar and attr in _SCALAR_VALS else to_py(v, vtype)

        def read_view(entry, values, extra=()):
            """One online_read for the unique keys; column name -> decoded values per input row."""
            view, key, requested, types = entry
            uniq = list(dict.fromkeys(values))
            protos = to_protos(uniq, self.entity_types[key])
            ek = [EntityKeyProto(join_keys=[key], entity_values=[p]) for p in protos]
            wanted = requested + [e for e in extra if e not in requested]
            rows = online.online_read(config=config, table=view, entity_keys=ek, requested_features=wanted)
            pos = {u: i for i, u in enumerate(uniq)}
            got = [rows[pos[v]][1] for v in values]
            cols = {}
            for name in wanted:
                vtype = types.get(name)
                scalar = getattr(vtype, "name", None) in _SCALAR_TYPES
                cols[name] = [None if d is None or name not in d else decode(d[name], vtype, scalar) for d in got]
            return cols

        cust = read_view(self.customer, ids, extra=(_TUTOR_KEY, _SUBJECT_KEY))
        primary, subject = cust[_TUTOR_KEY], cust[_SUBJECT_KEY]
        entity_vals = {
            "customer_id": ids,
            "tutor_id": [t if t is not None else NO_TUTOR for t in primary],
            "subject": [s if s is not None else NO_SUBJECT for s in subject],
            "marketplace_id": [C.MARKETPLACE_KEY] * n,
        }
        # as Feast: join keys (entity row order), then each view's features, then on-demand outputs;
        # Feast's to_dict decodes the join keys from their protos too
        out: dict[str, list] = {k: [to_py(p) for p in to_protos(v, self.entity_types[k])]
                                for k, v in entity_vals.items()}
        frames = {}
        for entry in self.views:
            view = entry[0]
            cols = cust if entry is self.customer else read_view(entry, entity_vals[entry[1]])
            frames[view.projection.name_to_use()] = cols
            for name in entry[2]:
                if name in self.result_names:
                    out[name] = cols[name]
        for odfv, wanted, declared in self.odfvs:
            # as Feast: the response so far (join keys, request data, the features read) minus the
            # features of views the on-demand view does not declare as sources
            feed = {k: out[k] for k in entity_vals}
            feed[C.REQUEST_TIME_FIELD] = [request_us] * n
            for entry in self.views:
                if entry[0].projection.name_to_use() in declared:
                    cols = frames[entry[0].projection.name_to_use()]
                    feed.update((name, cols[name]) for name in entry[2])
            result = odfv.transform_dict(feed)
            types = self.odfv_types[odfv.name]
            for name in result:
                if name in wanted and name in self.result_names:
                    vals = result[name]
                    protos = to_protos(vals if isinstance(vals, list) else [vals], types.get(name))
                    out[name] = [to_py(p) for p in protos]  # Feast decodes these without a type hint
        return out


def _epoch_us(ts: pd.Series) -> pd.Series:
    return (ts.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)


def model_columns() -> list[str]:
    return [f["name"] for f in C.model_features()]
