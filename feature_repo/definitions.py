"""The Feast repo's definitions: every Feast object, built from the feature declarations
(features/declarations.py) by features/feast_objects.py and bound here to its Feast name.

`cd feature_repo && feast apply` registers these module-level objects. The backfill's Parquet
tables are read from $MHP_FEATURES_URI (default: feature_repo/data/features).
"""
import os
import pathlib
import sys

from features.feast_objects import build

_FEATURES_URI = os.environ.get("MHP_FEATURES_URI", str(pathlib.Path(__file__).parent / "data" / "features"))
if "://" not in _FEATURES_URI and not pathlib.Path(_FEATURES_URI, "customer_features.parquet").exists():
    # Feast warns once per missing source file; say once what creates them
    print(f"feature_repo: no feature tables in {_FEATURES_URI} yet: create them with `python test_workflow.py` "
          "(a small simulation) or `mhp simulate --out data && mhp backfill --workspace data`", file=sys.stderr)
_objects = build(_FEATURES_URI)   # Feast name -> object

# Entities (join keys). The marketplace entity has the constant key "global".
customer = _objects["customer"]
tutor = _objects["tutor"]
subject = _objects["subject"]
marketplace = _objects["marketplace"]

# Sources: the backfill's Parquet tables; the customer view is written online by the stream
# through its push source.
customer_features_source = _objects["customer_features_source"]
customer_features_push = _objects["customer_features_push"]
tutor_features_source = _objects["tutor_features_source"]
subject_features_source = _objects["subject_features_source"]
marketplace_features_source = _objects["marketplace_features_source"]
scoring_request = _objects["scoring_request"]   # the request time of the on-demand views

# Feature views: one per entity.
customer_features = _objects["customer_features"]
tutor_features = _objects["tutor_features"]
subject_features = _objects["subject_features"]
marketplace_features = _objects["marketplace_features"]

# On-demand views (request time).
customer_recency = _objects["customer_recency"]
customer_trends = _objects["customer_trends"]

# The model's whole input vector.
churn_model_v1 = _objects["churn_model_v1"]
