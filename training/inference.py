"""SageMaker PyTorch inference handler: ``code/inference.py`` inside ``model.tar.gz``.

The SageMaker PyTorch serving container (and our local server, serving/) imports
this file from ``<model_dir>/code/`` and calls

    model = model_fn(model_dir)
    data = input_fn(request_body, request_content_type)
    prediction = predict_fn(data, model)
    body = output_fn(prediction, accept)

It is self-contained relative to its own directory: ``preprocess.py`` and ``model.py``
are copied beside it and loaded by file path (not via our package, which the container
does not have, and not by bare module name, which could clash with the container's).

Request (``application/json``), one of

* ``{"instances": [{feature: value, ...}, ...]}``, a bare list of such objects, or one object;
* ``{"columns": [feature, ...], "data": [[value, ...], ...]}`` (pandas' "split" orientation):
  the names once, then one list of values per row -- about a sixth of the bytes of the
  row objects for the 178-feature model, and as much less JSON to parse.

Every row must carry exactly the model's features (null allowed: missing is not zero).
Numbers must be finite and within float32's range: ``NaN``, ``Infinity`` and ``-Infinity``
(which Python's json accepts, strict JSON does not) are a 400 naming the instance and
feature -- send null for a missing value -- and so is a finite number beyond float32
(|x| > 3.4028235e38). JSON nested deeper than the parser's recursion limit (~1,000 levels)
is a 400. Response (``application/json``): ``{"predictions": [{"churn_risk_30d": p,
"ib_call_risk_14d": p, "customer_health_score": s, "model_version": v}, ...]}``, one entry
per row in order. Predictions are always finite: the encoded inputs are clipped to
+-``INPUT_CLIP`` (standard deviations, for numeric features) so the net's float32 sums cannot
overflow, and a non-finite output is a RuntimeError (a 500 naming head and row), never a 200.

Client errors raise :class:`InferenceInputError` carrying the HTTP status (400 bad JSON or
features, 413 too many rows, 415 content type, 406 accept type); the preprocessor's
``FeatureInputError`` is re-raised as one. On the SageMaker PyTorch inference container the
handler runs inside the SageMaker inference toolkit (``sagemaker_inference.transformer.Transformer``),
which answers an exception with HTTP 500 (InvokeEndpoint: ``ModelError``) unless it is a
``sagemaker_inference.errors.BaseInferenceToolkitError``, whose ``status_code`` it returns.
So where the toolkit is importable, ``InferenceInputError`` is also a
``GenericInferenceToolkitError``; where it is not (our own server, serving/server.py, and any
plain Python), it is a ValueError with ``status_code``, which our server maps to that status.
"""
from __future__ import annotations

import hashlib
import http
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

JSON = "application/json"
MAX_ROWS = int(os.environ.get("MHP_MAX_ROWS_PER_REQUEST", "10000"))
#: encoded inputs are clipped to +-INPUT_CLIP: far beyond any real value (numeric features are
#: standardised), small enough that no float32 sum in the net can overflow to inf (and inf - inf to NaN)
INPUT_CLIP = 1e6


try:  # ~8x faster on numbers than json; absent in the SageMaker container, where json does it all
    import orjson
except ImportError:
    orjson = None

try:  # the SageMaker inference toolkit, present in the SageMaker PyTorch inference container
    from sagemaker_inference.errors import GenericInferenceToolkitError as _ToolkitError
except ImportError:  # our own server (serving/server.py) maps status_code itself
    _ToolkitError = None


class InferenceInputError(*((ValueError,) if _ToolkitError is None else (_ToolkitError, ValueError))):
    """A bad request: the message names the problem; ``status_code`` is the HTTP status to send."""

    status_code = 400

    def __init__(self, message: str, status_code: int | None = None):
        status = int(status_code if status_code is not None else type(self).status_code)
        if _ToolkitError is not None:
            # sets status_code, message (the toolkit's response body) and phrase (the status line's reason)
            _ToolkitError.__init__(self, status, message, http.HTTPStatus(status).phrase)
        self.status_code = status
        self.message = message
        self.args = (message,)   # str(exc) is the message, with or without the toolkit


def _load_sibling(filename: str):
    """Import a file next to this one under a private module name (no sys.path change)."""
    here = Path(__file__).resolve().parent
    # one module per artifact directory: two loaded artifacts must not share code
    name = f"_mhp_inference_{filename[:-3]}_{hashlib.sha1(str(here).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, here / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


_preprocess = _load_sibling("preprocess.py")
_model = _load_sibling("model.py")


class ModelBundle:
    """What model_fn returns: the net, its fitted preprocessing and its config."""

    def __init__(self, net, preprocessor, config: dict[str, Any]):
        self.net = net
        self.preprocessor = preprocessor
        self.config = config
        self.model_version = str(config["model_version"])
        self.heads = list(config["architecture"]["heads"])
        self.calibration = _calibration_maps(config.get("calibration") or {}, self.heads)

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessor.schema.names


def _calibration_maps(stored: dict[str, Any], heads: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """model_config.json's post-hoc calibration (training/calibration.py): head -> isotonic breakpoints,
    applied with np.interp (no scikit-learn here). A malformed entry fails the load, not a request."""
    maps = {}
    for head, entry in stored.items():
        if head not in heads or not isinstance(entry, dict) or entry.get("method") != "isotonic":
            raise RuntimeError(f"model_config.json: calibration for {head!r} is not an isotonic map of a head")
        x, y = np.asarray(entry["x"], dtype=float), np.asarray(entry["y"], dtype=float)
        if x.ndim != 1 or x.shape != y.shape or len(x) < 2 or np.any(np.diff(x) <= 0) or not np.isfinite(y).all():
            raise RuntimeError(f"model_config.json: calibration for {head!r} needs increasing x and finite y "
                               "of equal length >= 2")
        maps[head] = (x, y)
    return maps


def model_fn(model_dir: str) -> ModelBundle:
    import torch

    torch.set_num_threads(int(os.environ.get("MHP_TORCH_THREADS", "1")))
    root = Path(model_dir)
    config = json.loads((root / "model_config.json").read_text(encoding="utf-8"))
    preprocessor = _preprocess.Preprocessor.load(root / "preprocess.json")
    net = _model.load_model(str(root / config.get("weights_file", "model.pt")), config["architecture"])
    if preprocessor.n_outputs != net.config.input_dim:
        raise RuntimeError(f"preprocess.json yields {preprocessor.n_outputs} inputs, "
                           f"the net expects {net.config.input_dim}")
    return ModelBundle(net, preprocessor, config)


class ColumnBatch:
    """Rows in the ``{"columns": [...], "data": [[...], ...]}`` form, as input_fn returns them."""

    def __init__(self, columns: list[str], data: list[list[Any]]):
        self.columns, self.data = columns, data

    def __len__(self) -> int:
        return len(self.data)


class _NonFinite:
    """What a NaN / Infinity / -Infinity literal parses to: found and reported after parsing."""

    def __init__(self, literal: str):
        self.literal = literal

    def __repr__(self) -> str:
        return self.literal


def _parse_json(text: str) -> tuple[Any, bool]:
    """-> (payload, whether a NaN/Infinity literal occurred).

    orjson (where installed) parses strict JSON; anything it refuses (NaN, Infinity, depth, a
    number beyond float64, ...) is parsed again by json, whose failures carry the specific message.
    Both give the same values for any JSON orjson accepts."""
    if orjson is not None:
        try:
            return orjson.loads(text), False
        except orjson.JSONDecodeError:
            pass
    seen: list[str] = []

    def constant(literal: str) -> _NonFinite:
        seen.append(literal)
        return _NonFinite(literal)

    try:
        return json.loads(text, parse_constant=constant), bool(seen)
    except json.JSONDecodeError as exc:
        raise InferenceInputError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InferenceInputError("request JSON is nested too deeply (beyond the parser's depth limit of "
                                  f"~{sys.getrecursionlimit()} levels); rows are flat objects") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise InferenceInputError(f"request body has a number that cannot be parsed: {exc}") from None


def _non_finite_error(rows: list[Any] | ColumnBatch) -> InferenceInputError:
    found = None
    if isinstance(rows, ColumnBatch):
        found = next(((i, rows.columns[j], v) for i, r in enumerate(rows.data) for j, v in enumerate(r)
                      if isinstance(v, _NonFinite) and j < len(rows.columns)), None)
    else:
        found = next(((i, k, v) for i, r in enumerate(rows) for k, v in r.items() if isinstance(v, _NonFinite)),
                     None)
    if found is None:
        return InferenceInputError("NaN / Infinity literals are not accepted anywhere in the request; "
                                   "numbers must be finite, null means missing")
    i, name, v = found
    return InferenceInputError(f"instance {i}, feature {name!r}: {v!r} is not accepted; numbers must be finite "
                               "(send null for a missing value)")


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def input_fn(request_body: Any, request_content_type: str | None) -> list[dict[str, Any]] | ColumnBatch:
    """Decode a JSON request into a list of feature rows or a :class:`ColumnBatch` (structure checks only)."""
    if _media_type(request_content_type) != JSON:
        raise InferenceInputError(f"unsupported content type {request_content_type!r}; send {JSON}", 415)
    if isinstance(request_body, (bytes, bytearray)):
        try:
            request_body = bytes(request_body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InferenceInputError(f"request body is not UTF-8: {exc}") from None
    if not isinstance(request_body, str) or not request_body.strip():
        raise InferenceInputError("empty request body; expected a JSON object")
    payload, non_finite = _parse_json(request_body)
    if isinstance(payload, dict) and ("columns" in payload or "data" in payload):
        rows = _column_batch(payload)
    elif isinstance(payload, dict) and "instances" in payload:
        extra = sorted(set(payload) - {"instances"})
        if extra:
            raise InferenceInputError(f"unexpected top-level keys beside 'instances': {extra}")
        rows = payload["instances"]
        if not isinstance(rows, list):
            raise InferenceInputError(f"'instances' must be a list of objects, got {type(rows).__name__}")
    elif isinstance(payload, dict):
        rows = [payload]
    elif isinstance(payload, list):
        rows = payload
    else:
        raise InferenceInputError(f"expected a JSON object or {{\"instances\": [...]}}, got {type(payload).__name__}")
    if not rows:
        raise InferenceInputError("no instances to score")
    if len(rows) > MAX_ROWS:
        raise InferenceInputError(f"{len(rows)} instances in one request; the limit is {MAX_ROWS}", 413)
    if not isinstance(rows, ColumnBatch):
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise InferenceInputError(f"instance {i}: expected a JSON object of feature values, "
                                          f"got {type(row).__name__}")
    if non_finite:
        raise _non_finite_error(rows)
    return rows


def _column_batch(payload: dict[str, Any]) -> ColumnBatch:
    extra = sorted(set(payload) - {"columns", "data"})
    if extra or "columns" not in payload or "data" not in payload:
        raise InferenceInputError("the column form is {\"columns\": [names], \"data\": [[values], ...]}; "
                                  f"got keys {sorted(payload)}")
    columns, data = payload["columns"], payload["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InferenceInputError("'columns' must be a list of feature names (strings)")
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise InferenceInputError(f"'columns' names a feature more than once: {dup}")
    if not isinstance(data, list):
        raise InferenceInputError(f"'data' must be a list of rows (lists of values), got {type(data).__name__}")
    width = len(columns)
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise InferenceInputError(f"instance {i}: expected a list of {width} values (one per column), got {got}")
    return ColumnBatch(columns, data)


def predict_fn(data: list[dict[str, Any]], model: ModelBundle) -> dict[str, Any]:
    """Validate and encode rows with the stored preprocessing, run the net."""
    try:
        with np.errstate(over="ignore"):  # a standardised value beyond float32 becomes inf: clipped below
            x = model.preprocessor.transform(_columns(data, model) if isinstance(data, ColumnBatch) else list(data))
    except _preprocess.FeatureInputError as exc:  # names the missing / unknown / mistyped features
        raise InferenceInputError(str(exc), exc.status_code) from exc
    np.clip(x, -INPUT_CLIP, INPUT_CLIP, out=x)
    scores = _model.predict(model.net, x)
    for h, (bx, by) in model.calibration.items():
        scores[h] = np.interp(scores[h], bx, by)
    for h in model.heads:
        bad = ~np.isfinite(scores[h])
        if bad.any():  # a model bug, not a client error: the server answers 500
            rows = np.flatnonzero(bad)
            raise RuntimeError(f"the model produced a non-finite {h} ({scores[h][rows[0]]}) for instance "
                               f"{int(rows[0])} ({len(rows)} of {len(x)} rows)")
    return {"model_version": model.model_version, "scores": {h: scores[h].tolist() for h in model.heads},
            "n": len(x)}


def _columns(batch: ColumnBatch, model: ModelBundle) -> dict[str, Any]:
    """A ColumnBatch -> {feature: object column}, with the same missing / unknown checks as rows."""
    expected = set(model.feature_names)
    unknown, missing = set(batch.columns) - expected, expected - set(batch.columns)
    if unknown:
        raise InferenceInputError(str(_preprocess.UnknownFeaturesError(unknown)))
    if missing:
        raise InferenceInputError(str(_preprocess.MissingFeaturesError(missing)))
    n = len(batch.data)
    try:  # one (rows, columns) object array, columns as views; nested values make it 3-D or fail
        matrix = np.array(batch.data, dtype=object)
    except ValueError:
        matrix = None
    if matrix is not None and matrix.shape == (n, len(batch.columns)):
        return {name: matrix[:, j] for j, name in enumerate(batch.columns)}
    return {name: np.fromiter(col, dtype=object, count=n) for name, col in zip(batch.columns, zip(*batch.data))}


def output_fn(prediction: dict[str, Any], accept: str | None) -> str:
    media = _media_type(accept)
    if media not in ("", "*/*", JSON, "application/*"):
        raise InferenceInputError(f"unsupported accept type {accept!r}; this model returns {JSON}", 406)
    rows = []
    for i in range(prediction["n"]):
        row = {h: float(v[i]) for h, v in prediction["scores"].items()}
        row["model_version"] = prediction["model_version"]
        rows.append(row)
    return json.dumps({"predictions": rows})
