"""``get_historical_features`` of the project's offline store: Feast's result, computed set-based.

Feast's ibis/duckdb store joins every view as a range join (all rows of the key at or before t)
followed by a window that keeps the latest, and evaluates Python on-demand views by turning the
whole result into Python lists. Here the same query is planned by Feast (its lazy ibis expression
gives the output schema, the on-demand views and the metadata; it is never executed) and computed
as one ``ASOF LEFT JOIN`` per view over only the requested columns (``features.pit_join``); the
project's on-demand views run over whole columns (``features.on_demand_arrays``). Rows come back
in entity order, with Feast's column names, order and Arrow types.

Shapes this path does not cover (a SQL entity query, field mappings, a created-timestamp cut-off,
sources that are not DuckDB relations, an output name equal to an entity column, other on-demand
views or full feature names with on-demand views) are computed by Feast's own code.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import ibis
import ibis.expr.operations as ops
import pandas as pd
import pyarrow as pa
from feast.feature_view import FeatureView
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.ibis import IbisRetrievalJob
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.on_demand_feature_view import OnDemandFeatureView

from .declarations import ON_DEMAND
from .on_demand_arrays import evaluate_on_demand_columns
from .pit_join import ViewJoin, pit_join

_ARRAY_VIEWS = {f.view: [g.name for g in ON_DEMAND if g.view == f.view] for f in ON_DEMAND}


def plan_views(feature_views: List[FeatureView], feature_refs: List[str], full_feature_names: bool,
               reader: Callable, repo_path: str, backend) -> Optional[list[ViewJoin]]:
    """One ``ViewJoin`` per view, as Feast's ``read_fv`` names the columns; None: not covered."""
    plan = []
    for fv in feature_views:
        source = fv.batch_source
        if source is None or source.field_mapping:
            return None
        table = reader(source, repo_path)
        op = table.op()
        if not isinstance(op, ops.DatabaseTable) or op.source is not backend:
            return None
        prefix = fv.projection.name_to_use()
        names = [r.split(":")[1] for r in feature_refs if r.startswith(f"{prefix}:")]
        base = fv.projection.name_alias or fv.name
        out = {n: (f"{base}__{n}" if full_feature_names else n) for n in names}
        keys = fv.projection.join_key_map or {e.name: e.name for e in fv.entity_columns}
        plan.append(ViewJoin(relation=op.name, join_keys=dict(keys), timestamp_field=source.timestamp_field,
                             created_timestamp_field=source.created_timestamp_column or None,
                             features=out, ttl=fv.ttl))
    return plan


def _array_view(odfv: OnDemandFeatureView) -> bool:
    """One of the project's on-demand views (body ``evaluate_on_demand(<view>, inputs)``)."""
    udf = getattr(odfv.feature_transformation, "udf_string", "") or ""
    return (odfv.mode == "python" and odfv.name in _ARRAY_VIEWS and "evaluate_on_demand(" in udf
            and {f.name for f in odfv.features} <= set(_ARRAY_VIEWS[odfv.name]))


def asof_job(stock: RetrievalJob, entity_df, feature_views: List[FeatureView], feature_refs: List[str],
             full_feature_names: bool, filter_by_created_timestamp: bool, reader: Callable,
             repo_path: str) -> RetrievalJob:
    """``stock`` (Feast's own, unexecuted job) computed set-based when the shape is covered."""
    if not isinstance(stock, IbisRetrievalJob) or not isinstance(entity_df, pd.DataFrame) \
            or filter_by_created_timestamp:
        return stock
    odfvs = stock.on_demand_feature_views
    if odfvs and (full_feature_names or not all(_array_view(o) for o in odfvs)):
        return stock
    backend = ibis.get_backend()
    plan = plan_views(feature_views, feature_refs, full_feature_names, reader, repo_path, backend)
    if plan is None:
        return stock
    outputs = [o for v in plan for o in v.features.values()]
    if len(set(outputs)) != len(outputs) or set(outputs) & set(entity_df.columns):
        return stock
    schema = stock.table.schema().to_pyarrow()
    if schema.names != list(entity_df.columns) + outputs:
        return stock
    ts_col = offline_utils.infer_event_timestamp_from_entity_df(dict(zip(entity_df.columns, entity_df.dtypes)))
    return AsOfRetrievalJob(stock, entity_df, ts_col, plan, schema, backend.con)


class AsOfRetrievalJob(IbisRetrievalJob):
    """Feast's ``IbisRetrievalJob`` for the same query, executed as ASOF joins."""

    def __init__(self, stock: IbisRetrievalJob, entity_df: pd.DataFrame, event_timestamp_col: str,
                 plan: list[ViewJoin], schema: pa.Schema, con):
        super().__init__(stock.table, stock.on_demand_feature_views, stock.full_feature_names, stock.metadata,
                         stock.data_source_writer, stock.staging_location,
                         stock.staging_location_endpoint_override, stock.repo_path)
        self._entity_df, self._ts_col, self._plan, self._schema, self._con = (
            entity_df, event_timestamp_col, plan, schema, con)

    def _to_arrow_internal(self, timeout: Optional[int] = None) -> pa.Table:
        n_entity = len(self._entity_df.columns)
        entity = pa.Table.from_pandas(self._entity_df, preserve_index=False)
        try:
            entity = entity.replace_schema_metadata(None).cast(pa.schema(list(self._schema)[:n_entity]))
        except pa.ArrowInvalid as exc:  # Feast's own conversion of the entity frame fails the same way
            raise ValueError(f"entity dataframe: a column does not fit Feast's type for it ({exc}); "
                             "event times must be whole microseconds (e.g. .dt.floor('us'))") from exc
        feats = self._join(entity)
        cols = list(entity.columns) + [feats.column(f.name).cast(f.type) for f in list(self._schema)[n_entity:]]
        return pa.Table.from_arrays(cols, schema=self._schema)

    def _join(self, entity: pa.Table) -> pa.Table:
        """The plan's feature columns for every entity row, in order (``features.feast_spark_offline``
        runs the same join on Spark)."""
        return pit_join(self._con, entity, self._ts_col, self._plan)

    def _to_df_internal(self, timeout: Optional[int] = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def to_df(self, validation_reference=None, timeout: Optional[int] = None) -> pd.DataFrame:
        # RetrievalJob.to_df is to_arrow().to_pandas().reset_index(drop=True): the frame already has
        # that index, and the reset would copy every column
        return self.to_arrow(validation_reference=validation_reference, timeout=timeout).to_pandas()

    def to_arrow(self, validation_reference=None, timeout: Optional[int] = None) -> pa.Table:
        odfvs = self.on_demand_feature_views
        if not odfvs or validation_reference is not None:
            return super().to_arrow(validation_reference=validation_reference, timeout=timeout)
        table = self._to_arrow_internal(timeout)
        if table.num_rows == 0:  # Feast's own transform types empty outputs as null columns
            return super().to_arrow(timeout=timeout)
        requested = self._requested_on_demand()
        columns = table  # the joined columns (the outputs appended below are not inputs)
        for odfv in odfvs:
            wanted = requested.get(odfv.name, requested.get(odfv.projection.name_to_use()))
            for name, arr in evaluate_on_demand_columns(odfv.name, columns, table.num_rows).items():
                if wanted is None or name in wanted:
                    table = table.append_column(name, arr)
        return table

    def _requested_on_demand(self) -> dict[str, set[str]]:
        """On-demand view name -> requested output names, as ``RetrievalJob.to_arrow`` filters them."""
        out: dict[str, set[str]] = {}
        meta = self.metadata
        for ref in (meta.features if meta and meta.features else []):
            if ":" not in ref:
                continue
            view, name = ref.split(":", 1)
            for odfv in self.on_demand_feature_views:
                if view in (odfv.name, odfv.projection.name_to_use()):
                    out.setdefault(view, set()).add(name)
        return out

    def persist(self, storage, allow_overwrite: bool = False, timeout: Optional[int] = None):
        self.data_source_writer(ibis.memtable(self._to_arrow_internal(timeout)), storage.to_data_source(),
                                self.repo_path, "overwrite", allow_overwrite)

    def to_remote_storage(self) -> List[str]:
        self.table = ibis.memtable(self._to_arrow_internal())
        return super().to_remote_storage()
