"""spark-submit entry point: the offline jobs of the ``mhp`` command on a Spark cluster (EMR Serverless,
EMR on EC2, Glue), e.g.

    spark-submit deploy/spark_job.py backfill --engine spark --profile aws --data-uri s3://BUCKET/data

The project (with its ``spark`` extra) is installed in the job's Python environment (docs/scale.md).
Under spark-submit ``core.spark`` takes the cluster's session (its master, memory and ``s3://``
filesystem) instead of starting a local one.
"""
import sys

from mhp.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
