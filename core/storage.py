"""URIs that are either local paths or ``s3://bucket/key``: one API for both.

S3 goes through ``s3fs`` (fsspec) with the endpoint from the environment
(:func:`core.aws.endpoint_url`, e.g. a moto server), never through DuckDB's
``httpfs`` extension, which cannot be downloaded on an offline machine.

Public API::

    is_s3(uri) -> bool
    filesystem(uri) -> (fsspec filesystem, path-without-protocol)
    join(uri, *parts) -> uri
    exists(uri) -> bool
    write_parquet(table, uri)          # pyarrow.Table or pandas.DataFrame, one file
    read_parquet(uri) -> pyarrow.Table # file, directory (hive partitions) or glob
    duckdb_connect(for_uris=None, database=":memory:") -> duckdb connection
    register_s3(con)                   # add s3:// to an existing DuckDB connection
"""
from __future__ import annotations

import os
import posixpath
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from core import aws

_GLOB_CHARS = "*?["


def is_s3(uri: str | os.PathLike) -> bool:
    return str(uri).startswith(("s3://", "s3a://"))


def s3_filesystem():
    """An s3fs filesystem bound to the current endpoint/credentials (from the env).

    Listing caches are off: other processes (Feast, boto3) write to the same
    buckets, and a stale directory listing would make a glob miss new files.
    """
    import s3fs

    client_kwargs: dict[str, Any] = {"region_name": aws.region()}
    ep = aws.endpoint_url()
    if ep:
        client_kwargs["endpoint_url"] = ep
    return s3fs.S3FileSystem(
        client_kwargs=client_kwargs,
        use_listings_cache=False,
        skip_instance_cache=True,
    )


def filesystem(uri: str | os.PathLike):
    """Return ``(fs, path)``: an fsspec filesystem and the path to hand to it."""
    uri = str(uri)
    if is_s3(uri):
        return s3_filesystem(), uri.split("://", 1)[1]
    from fsspec.implementations.local import LocalFileSystem

    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return LocalFileSystem(), os.path.abspath(uri)


def join(uri: str | os.PathLike, *parts: str) -> str:
    uri = str(uri)
    if is_s3(uri) or "://" in uri:
        return posixpath.join(uri.rstrip("/"), *[p.strip("/") for p in parts])
    return os.path.join(uri, *parts)


def exists(uri: str | os.PathLike) -> bool:
    fs, path = filesystem(uri)
    if any(c in path for c in _GLOB_CHARS):
        return bool(fs.glob(path))
    return fs.exists(path)


def _as_arrow(table: Any) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return pa.Table.from_pandas(table, preserve_index=False)
    raise TypeError(f"write_parquet: expected pyarrow.Table or pandas.DataFrame, got {type(table).__name__}")


def write_parquet(table: Any, uri: str | os.PathLike, **kwargs: Any) -> str:
    """Write one Parquet file at ``uri`` (parent folders created). Returns ``uri``.

    Timestamps are stored as microseconds (``coerce_timestamps="us"``; raises
    rather than truncating sub-microsecond values). DuckDB 2.0 reads
    nanosecond tz-aware columns as ``TIMESTAMP_NS WITH TIME ZONE``, which ibis 12
    (hence Feast's duckdb offline store) does not know and turns into strings.
    """
    fs, path = filesystem(uri)
    if not is_s3(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    kwargs.setdefault("coerce_timestamps", "us")
    pq.write_table(_as_arrow(table), path, filesystem=fs, **kwargs)
    return str(uri)


def read_parquet(uri: str | os.PathLike, **kwargs: Any) -> pa.Table:
    """Read a Parquet file, a directory of them (hive partitions decoded) or a glob."""
    fs, path = filesystem(uri)
    if any(c in path for c in _GLOB_CHARS):
        files = sorted(p for p in fs.glob(path) if not fs.isdir(p))
        if not files:
            raise FileNotFoundError(f"no Parquet file matches {uri}")
        return pads.dataset(files, filesystem=fs, format="parquet").to_table(**kwargs)
    if fs.isdir(path):
        return pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table(**kwargs)
    return pq.read_table(path, filesystem=fs, **kwargs)


def register_s3(con) -> None:
    """Register an s3fs filesystem on a DuckDB connection so ``s3://`` paths work.

    Works for a raw ``duckdb.DuckDBPyConnection`` and for an ibis DuckDB backend
    (which has its own ``register_filesystem``). The endpoint is taken from the
    environment at call time.
    """
    con.register_filesystem(s3_filesystem())


def duckdb_connect(for_uris: Iterable[str] | None = None, database: str = ":memory:", **kwargs: Any):
    """A DuckDB connection that can read ``s3://`` (via s3fs) as well as local paths.

    ``for_uris``: the URIs the caller will touch; s3fs is registered when any of
    them is ``s3://`` or when ``for_uris`` is None (the safe default).
    """
    import duckdb

    con = duckdb.connect(database, **kwargs)
    uris = None if for_uris is None else [str(u) for u in for_uris]
    if uris is None or any(is_s3(u) for u in uris):
        register_s3(con)
    return con


def _reset_caches() -> None:
    """Hook for core.aws when an endpoint goes away (nothing cached today)."""
    return None
