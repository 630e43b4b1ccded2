"""The project's offline store on Spark: Feast's ``get_historical_features`` with the point-in-time join run by Spark.

Selected like any Feast offline store (``feature_store.yaml`` / ``RepoConfig``)::

    offline_store:
      type: features.feast_spark_offline.SparkFileOfflineStore

The views keep their ``FileSource`` definitions (the same registry as the DuckDB store). Feast plans
the query exactly as for ``features.feast_offline.S3DuckDBOfflineStore`` (``features.asof_retrieval``:
the output schema, the on-demand views, what is covered); the join itself runs as Spark SQL over the
sources' Parquet files (``features.spark_pit_join``); the on-demand views then run over whole
columns of the collected Arrow result on the driver (``features.on_demand_arrays``, the same code as
the DuckDB store). Same rows in entity order, same names, order and Arrow types, cell for cell.

Every other operation (materialization, pulls, writes) is the DuckDB store's. Spark reads the
sources with its own filesystems: local paths here; ``s3://`` on EMR, ``s3a://`` with hadoop-aws.

Why not Feast's contrib ``SparkOfflineStore``: it accepts only ``SparkSource`` views (a second set
of definitions), returns rows in no particular order, and converts results through pandas
(integers with nulls become floats), so its training set would not equal the DuckDB one.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import List, Union

import pandas as pd
import pyarrow as pa
from feast import FeatureStore
from feast.feature_view import FeatureView
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig
from pydantic import StrictStr

from core.spark import spark_session

from .asof_retrieval import AsOfRetrievalJob
from .feast_offline import S3DuckDBOfflineStore, S3DuckDBOfflineStoreConfig
from .spark_pit_join import spark_pit_join

TYPE = "features.feast_spark_offline.SparkFileOfflineStore"


class SparkFileOfflineStoreConfig(S3DuckDBOfflineStoreConfig):
    type: StrictStr = TYPE


class SparkFileOfflineStore(S3DuckDBOfflineStore):
    """``S3DuckDBOfflineStore`` whose ``get_historical_features`` joins on Spark."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: List[FeatureView],
        feature_refs: List[str],
        entity_df: Union[pd.DataFrame, str],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        # the DuckDB store's plan (Feast's query, one ViewJoin per view), its join then run by Spark
        planned = S3DuckDBOfflineStore.get_historical_features(
            config, feature_views, feature_refs, entity_df, registry, project, full_feature_names,
            filter_by_created_timestamp)
        if not isinstance(planned, AsOfRetrievalJob):
            raise ValueError("the Spark offline store serves pandas entity frames over FileSource views without "
                             "field mappings or a created-timestamp cut-off, with the project's on-demand views; "
                             "use the DuckDB store (features.feast_offline.S3DuckDBOfflineStore) for this request")
        paths = [_source_path(fv) for fv in feature_views]  # asof_job plans one ViewJoin per view, in order
        return SparkRetrievalJob(planned, paths)


def _source_path(fv: FeatureView) -> str:
    source = fv.batch_source
    if not isinstance(source, FileSource):
        raise ValueError(f"{fv.name}: the Spark offline store reads FileSource views, got {type(source).__name__}")
    return source.path


class SparkRetrievalJob(AsOfRetrievalJob):
    """Feast's retrieval job for the planned query, its join executed by Spark."""

    def __init__(self, planned: AsOfRetrievalJob, paths: list[str]):
        super().__init__(planned, planned._entity_df, planned._ts_col, planned._plan, planned._schema, planned._con)
        self._paths = paths

    def _join(self, entity: pa.Table) -> pa.Table:
        spark = spark_session()
        tag = uuid.uuid4().hex[:12]
        plan = []
        for i, (view, path) in enumerate(zip(self._plan, self._paths)):
            name = f"__mhp_view_{tag}_{i}"
            spark.read.parquet(path).createOrReplaceTempView(name)
            plan.append(dataclasses.replace(view, relation=name))
        try:
            return spark_pit_join(spark, entity, self._ts_col, plan)
        finally:
            for view in plan:
                spark.catalog.dropTempView(view.relation)


def spark_feature_store(store: FeatureStore) -> FeatureStore:
    """``store`` (same repo, registry and online store) with this module's offline store."""
    config = store.config.model_dump(by_alias=True, exclude_none=True)
    config["offline_store"] = {**config.get("offline_store", {}), "type": TYPE}  # keeps s3_endpoint_url
    return FeatureStore(repo_path=str(store.repo_path), config=RepoConfig(**config))
