"""Where the simulation goes: a local folder or an s3://bucket/prefix, through fsspec.

Layout under OUT:
    events/date=YYYY-MM-DD/part-0.parquet   the event log (events.contract.EVENT_LOG_SCHEMA)
    stream.jsonl                            every event, ordered by (timestamp, event_id); with a
                                            Disorder, in arrival order (late and re-sent lines)
    truth.parquet                           latent state per (customer_id, date), at 00:00 UTC
    simulation.json                         the SimConfig (the oracle rebuilds the world from it)
    summary.json                            event counts and label base rates
Everything is written as the days go by, so memory does not grow with the number of days.
"""
from __future__ import annotations

import datetime as dt
import io
import os

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .config import SimConfig
from .disorder import ArrivalOrder
from core.times import date_us

# Fixed writer settings: identical inputs must give identical bytes.
_PARQUET = dict(compression="zstd", use_dictionary=True, write_statistics=True)


def filesystem(out: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, root path) for a local folder or an s3:// URI.

    s3fs reads AWS_ENDPOINT_URL through botocore; it is also passed explicitly so
    that an older botocore still talks to the local moto server.
    """
    options = {}
    if out.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        options["client_kwargs"] = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    fs, root = fsspec.core.url_to_fs(out, **options)
    return fs, root.rstrip("/")


class SimulationOutput:
    def __init__(self, out: str, config: SimConfig, truth_schema: pa.Schema,
                 arrival: ArrivalOrder | None = None):
        self.fs, self.root = filesystem(out)
        self.arrival = arrival
        if self.fs.exists(f"{self.root}/events"):  # a previous run's partitions would mix in
            self.fs.rm(f"{self.root}/events", recursive=True)
        self.fs.makedirs(self.root, exist_ok=True)
        with self.fs.open(f"{self.root}/simulation.json", "w") as f:
            f.write(config.to_json())
        self._stream = self.fs.open(f"{self.root}/stream.jsonl", "wb")
        self._truth_file = self.fs.open(f"{self.root}/truth.parquet", "wb")
        self._truth = pq.ParquetWriter(self._truth_file, truth_schema, **_PARQUET)

    def write_day(self, date: dt.date, events: pa.Table, lines: bytes) -> None:
        if events.num_rows:
            path = f"{self.root}/events/date={date:%Y-%m-%d}"
            self.fs.makedirs(path, exist_ok=True)
            buf = io.BytesIO()
            pq.write_table(events, buf, **_PARQUET)
            with self.fs.open(f"{path}/part-0.parquet", "wb") as f:
                f.write(buf.getvalue())
        if self.arrival is not None:
            ts = events.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
            lines = self.arrival.day(date_us(date + dt.timedelta(days=1)), ts, lines.splitlines(keepends=True))
        self._stream.write(lines)

    def write_truth(self, table: pa.Table) -> None:
        if table.num_rows:
            self._truth.write_table(table)

    def write_text(self, name: str, text: str) -> None:
        with self.fs.open(f"{self.root}/{name}", "w") as f:
            f.write(text)

    def close(self) -> None:
        if self.arrival is not None:  # deliveries after the last simulated day
            self._stream.write(self.arrival.flush())
        self._truth.close()
        self._truth_file.close()
        self._stream.close()
