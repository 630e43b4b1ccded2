"""The project's offline store: Feast's DuckDB store with fast point-in-time retrieval and ``s3://`` sources.

Point-in-time retrieval (``get_historical_features``): Feast's ibis code plans the query (lazily,
never executed), then ``features.asof_retrieval`` computes it as one narrow DuckDB ``ASOF LEFT
JOIN`` per view and the project's on-demand views over whole columns: the stock store's result,
cell for cell, in entity order (docs/features.md, "Point-in-time retrieval").

Reading ``s3://`` offline (Feast 0.67 + ibis 12 + DuckDB 2.0, measured):

* The stock ``duckdb`` offline store reads a FileSource with
  ``ibis.read_parquet(path)``; for any ``s3://`` path ibis first runs
  ``INSTALL httpfs; LOAD httpfs``, which needs to download the extension from
  extensions.duckdb.org, so it fails on an offline machine even when an fsspec
  filesystem for ``s3`` is registered on the connection.
* ``ibis_backend.sql("SELECT ... read_parquet('s3://...')")`` would avoid the
  extension but is broken on DuckDB 2.0 (ibis calls the removed
  ``DuckDBPyConnection.fetch_arrow_table``).

So the data-source reader/writer callbacks are swapped: for ``s3://`` the reader registers an
s3fs filesystem (endpoint from config, the FileSource's ``s3_endpoint_override`` or the
environment) on ibis' default DuckDB backend, creates a temp view over ``read_parquet(...)``
itself and hands back the ibis table. Local paths go through the stock callbacks unchanged.

Configure with::

    offline_store:
      type: features.feast_offline.S3DuckDBOfflineStore
      s3_endpoint_url: ${MHP_AWS_ENDPOINT_URL}   # optional; env AWS_ENDPOINT_URL otherwise

A FileSource ``path`` may be a file, a glob (``s3://b/fv/*.parquet``) or a
directory (read as ``<dir>/**/*.parquet`` with hive partitioning).
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any, Callable, List, Optional, Union

import ibis
import pandas as pd
import pyarrow
from feast.data_source import DataSource
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_view import FeatureView
from feast.infra.offline_stores import duckdb as feast_duckdb
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.ibis import (
    get_historical_features_ibis,
    offline_write_batch_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig
from pydantic import StrictStr

from core import aws, local_aws, storage

from .asof_retrieval import asof_job

_GLOB_CHARS = "*?["
_lock = threading.Lock()
_registered: dict[int, Optional[str]] = {}  # id(duckdb con) -> endpoint registered on it


class S3DuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    type: StrictStr = "features.feast_offline.S3DuckDBOfflineStore"
    s3_endpoint_url: Optional[str] = None
    """S3 endpoint override (moto / MinIO); empty or unset = AWS_ENDPOINT_URL env or real AWS."""


def _endpoint_for(config: Optional[RepoConfig], data_source: Optional[FileSource]) -> Optional[str]:
    ep = None
    if config is not None:
        ep = getattr(config.offline_store, "s3_endpoint_url", None)
    if not ep and data_source is not None:
        ep = data_source.s3_endpoint_override
    if not ep:

        ep = aws.endpoint_url()
    # an unset ${VAR} survives os.path.expandvars literally: treat it as unset
    if ep and ep.startswith("${"):
        ep = None
    return ep or None


def _s3_backend(endpoint: Optional[str]):
    """ibis' default DuckDB backend with an s3fs filesystem for ``endpoint`` registered."""
    import s3fs


    backend = ibis.get_backend()
    con = backend.con
    with _lock:
        key = id(con)
        if key in _registered and _registered[key] == endpoint:
            return backend
        if key in _registered:
            try:
                con.unregister_filesystem("s3")
            except Exception:  # noqa: BLE001
                pass
        client_kwargs: dict[str, Any] = {"region_name": aws.region()}
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        fs = s3fs.S3FileSystem(
            client_kwargs=client_kwargs, use_listings_cache=False, skip_instance_cache=True
        )
        con.register_filesystem(fs)
        _registered[key] = endpoint
    return backend


def _parquet_glob(path: str) -> tuple[str, bool]:
    """(duckdb read_parquet argument, hive?) for a file, glob or directory path."""
    if any(c in path for c in _GLOB_CHARS):
        return path, True
    if path.endswith(".parquet"):
        return path, False
    return path.rstrip("/") + "/**/*.parquet", True


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def make_reader(config: Optional[RepoConfig]) -> Callable[[DataSource, str], Any]:
    def read(data_source: DataSource, repo_path: str):
        if not (isinstance(data_source, FileSource) and storage.is_s3(data_source.path)):
            return feast_duckdb._read_data_source(data_source, repo_path)
        backend = _s3_backend(_endpoint_for(config, data_source))
        glob, hive = _parquet_glob(data_source.path)
        name = f"mhp_s3_{uuid.uuid4().hex}"
        opts = ", hive_partitioning = true" if hive else ""
        backend.con.execute(
            f'CREATE OR REPLACE TEMP VIEW "{name}" AS '
            f"SELECT * FROM read_parquet({_sql_str(glob)}{opts})"
        )
        return backend.table(name)

    return read


def make_writer(config: Optional[RepoConfig]) -> Callable[..., None]:
    def write(table, data_source: DataSource, repo_path: str, mode: str = "append",
              allow_overwrite: bool = False):
        if not (isinstance(data_source, FileSource) and storage.is_s3(data_source.path)):
            return feast_duckdb._write_data_source(table, data_source, repo_path, mode, allow_overwrite)

        with local_aws.patched_env(_endpoint_env(_endpoint_for(config, data_source))):
            arrow = table.to_pyarrow() if hasattr(table, "to_pyarrow") else table
            uri = data_source.path
            glob, _ = _parquet_glob(uri)
            if glob != uri:  # directory or glob source: append = add one more file
                base = uri.split("*", 1)[0].rstrip("/") if "*" in uri else uri.rstrip("/")
                if mode == "overwrite" and storage.exists(glob) and not allow_overwrite:
                    raise SavedDatasetLocationAlreadyExists(location=uri)
                storage.write_parquet(arrow, storage.join(base, f"part-{uuid.uuid4().hex}.parquet"))
                return
            if mode == "overwrite":
                if storage.exists(uri) and not allow_overwrite:
                    raise SavedDatasetLocationAlreadyExists(location=uri)
                storage.write_parquet(arrow, uri)
                return
            prev = storage.read_parquet(uri)
            if arrow.schema != prev.schema:
                arrow = arrow.select(prev.schema.names).cast(prev.schema)
            storage.write_parquet(pyarrow.concat_tables([prev, arrow]), uri)

    return write


def _endpoint_env(ep: Optional[str]) -> dict[str, Optional[str]]:
    return {"AWS_ENDPOINT_URL": ep} if ep else {}


def _common(config: RepoConfig) -> dict[str, Any]:
    return dict(
        data_source_reader=make_reader(config),
        data_source_writer=make_writer(config),
        staging_location=config.offline_store.staging_location,
        staging_location_endpoint_override=config.offline_store.staging_location_endpoint_override,
    )


class S3DuckDBOfflineStore(DuckDBOfflineStore):
    """DuckDBOfflineStore whose FileSources may live on ``s3://`` (read through s3fs)."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: List[str],
        feature_name_columns: List[str],
        timestamp_field: str,
        created_timestamp_column: Optional[str],
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        return pull_latest_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_common(config),
        )

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
        common = _common(config)
        stock = get_historical_features_ibis(  # lazy: planned by Feast, executed below as ASOF joins
            config=config,
            feature_views=feature_views,
            feature_refs=feature_refs,
            entity_df=entity_df,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            filter_by_created_timestamp=filter_by_created_timestamp,
            **common,
        )
        return asof_job(stock, entity_df, feature_views, feature_refs, full_feature_names,
                        filter_by_created_timestamp, common["data_source_reader"], str(config.repo_path))

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: List[str],
        feature_name_columns: List[str],
        timestamp_field: str,
        created_timestamp_column: Optional[str] = None,
        start_date: Optional[datetime] = None,
        end_date: Optional[datetime] = None,
    ) -> RetrievalJob:
        return pull_all_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            **_common(config),
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pyarrow.Table,
        progress: Optional[Callable[[int], Any]],
    ):
        offline_write_batch_ibis(
            config=config,
            feature_view=feature_view,
            table=table,
            progress=progress,
            data_source_writer=make_writer(config),
        )
