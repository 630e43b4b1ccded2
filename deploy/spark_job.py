"""spark-submit entry point: the offline jobs of the ``mhp`` command on a Spark cluster (EMR Serverless,
EMR on EC2, Glue), e.g.

    spark-submit deploy/spark_job.py backfill --engine spark --profile aws --data-uri s3://BUCKET/data

Glue passes its own arguments (``--JOB_NAME`` ...) to the script: give the command as one job
argument instead, ``--mhp-args "backfill --engine spark ..."``; everything else is then ignored.

The project is installed in the job's Python environment (docs/scale.md). Under spark-submit
``core.spark`` takes the cluster's session (its master, memory and ``s3://`` filesystem) instead of
starting a local one.
"""
import shlex
import sys

from mhp.cli import main


def command_line(argv: list[str]) -> list[str]:
    """The ``mhp`` arguments: the value of ``--mhp-args`` when given (Glue), else the arguments as they are."""
    for i, arg in enumerate(argv):
        if arg == "--mhp-args" and i + 1 < len(argv):
            return shlex.split(argv[i + 1])
        if arg.startswith("--mhp-args="):
            return shlex.split(arg.split("=", 1)[1])
    return argv


if __name__ == "__main__":
    sys.exit(main(command_line(sys.argv[1:])))
