"""One Spark session for the offline jobs (``--engine spark``): local mode here, the cluster's on EMR/Glue.

The settings that make Spark's answers equal DuckDB's are fixed here, once: UTC session time,
ANSI SQL (errors instead of silent nulls), microsecond Parquet timestamps. Everything else
(master, memory, shuffle partitions) comes from the environment so the same job runs on a
laptop and on a cluster (docs/scale.md):

    MHP_SPARK_MASTER              default ``local[2]``; ignored under spark-submit, which decides
    MHP_SPARK_DRIVER_MEMORY       default ``2g`` (local mode: the only JVM)
    MHP_SPARK_SHUFFLE_PARTITIONS  default 8 in local mode (small data); a cluster keeps its own

Public API::

    spark_session() -> pyspark.sql.SparkSession   # created once per process, reused
    on_cluster() -> bool                          # under spark-submit (EMR, Glue): its session, native s3://
    sql_conf(spark, settings), ANSI_QUOTES        # session SQL settings for one job, restored after
    stop_spark()                                  # stop it (tests, end of a command)
    SparkUnavailable                              # pyspark or Java missing: says how to install
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

from core.errors import UsageError

_SESSION = None


class SparkUnavailable(UsageError):
    """``--engine spark`` cannot start: pyspark or a Java runtime is missing."""


def _check_java() -> None:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not os.path.exists(java):
        raise SparkUnavailable("--engine spark needs a Java 17+ runtime: none found (install openjdk-17-jre-headless "
                               "or set JAVA_HOME)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        return  # an unusual banner: let Spark itself judge
    if major < 17:
        raise SparkUnavailable(f"--engine spark needs Java 17 or newer; {java} is Java {major}")


def on_cluster() -> bool:
    """True under spark-submit (EMR, Glue, a cluster's master): the JVM was started first and handed
    the Python driver its gateway port. The session is then spark-submit's (master, memory, and
    filesystems that read ``s3://`` natively); only the SQL settings below are ours."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def spark_session():
    """The process's Spark session (created on first use)."""
    global _SESSION
    if _SESSION is not None and not _SESSION.sparkContext._jsc.sc().isStopped():
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise SparkUnavailable("--engine spark needs pyspark: pip install 'marketplace-health[spark]'") from e
    builder = SparkSession.builder.appName("marketplace-health")
    master = "" if on_cluster() else os.environ.get("MHP_SPARK_MASTER", "local[2]")
    if not on_cluster():
        _check_java()
    if master:
        builder = builder.master(master)
    if master.startswith("local"):
        # Local mode binds to loopback only; nothing listens beyond this machine.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.driver.memory", os.environ.get("MHP_SPARK_DRIVER_MEMORY", "2g"))
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   # list a day-partitioned log's folders in the driver: a listing job costs more here
                   .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000"))
    builder = (builder
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.ansi.enabled", "true")
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
               .config("spark.sql.adaptive.enabled", "true"))
    partitions = os.environ.get("MHP_SPARK_SHUFFLE_PARTITIONS", "" if on_cluster() else "8")
    if partitions:   # a cluster keeps its own default (adaptive execution coalesces small ones)
        builder = builder.config("spark.sql.shuffle.partitions", partitions)
    session = builder.getOrCreate()
    major = int(session.version.split(".")[0])
    if major < 4:   # the jobs use Spark 4's SQL and DataFrame.toArrow
        raise SparkUnavailable(f"--engine spark needs Spark 4.x; this session runs Spark {session.version}")
    session.sparkContext.setLogLevel("ERROR")
    _SESSION = session
    return _SESSION


#: the generated SQL quotes identifiers the ANSI way ("name"); Spark reads them so with this setting
ANSI_QUOTES = {"spark.sql.ansi.doubleQuotedIdentifiers": "true"}


@contextlib.contextmanager
def sql_conf(spark, settings: dict[str, str]):
    """Set session SQL settings for the duration of a job; restore the previous values after."""
    before = {k: spark.conf.get(k, None) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


def stop_spark() -> None:
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
        _SESSION = None
