"""The Feast repo's definitions, generated from the feature catalog (features/catalog.py).

`cd feature_repo && feast apply` registers them. The backfill's Parquet tables
are read from $MHP_FEATURES_URI (default: feature_repo/data/features).
"""
import os
import pathlib

from features.feast_objects import build

_FEATURES_URI = os.environ.get("MHP_FEATURES_URI", str(pathlib.Path(__file__).parent / "data" / "features"))

globals().update(build(_FEATURES_URI))  # feast collects the module-level objects
