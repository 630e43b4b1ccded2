"""The served-feature log for drift monitoring (``mhp drift --serving``, validation/drift.py).

One JSON line per scored (customer, request time): ``customer_id``, ``request_time``
(ISO-8601 UTC), ``model_version`` and the model's feature vector exactly as sent to the
endpoint, under the training set's column names (nulls as null). JSON carries no column types:
the reader (``validation.drift.load_serving_log``) gives each column the training set's type, so a
boolean with nulls stays a boolean.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence


class ServedLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        text = "".join(json.dumps(r, allow_nan=False, default=str) + "\n" for r in records)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
