"""One call for one customer: ``GET /features/{customer_id}?at=...`` returns the whole ``churn_model_v1``
vector, as ``features.retrieval.online_features`` reads it.

Feast's own feature server needs every join key of the service in the request (``customer_id``,
``tutor_id``, ``subject``, ``marketplace_id``) plus the request time in microseconds, and the
customer's primary tutor/subject must be read first: two calls and four keys. This endpoint does
both lookups server-side (docs/features.md, "One call for one customer").

Run: ``python -m features.online_http --repo feature_repo [--host 127.0.0.1 --port 6567]``.
"""
from __future__ import annotations

import argparse
import math
from datetime import datetime, timezone

import pandas as pd
from fastapi import FastAPI, HTTPException, Query
from feast import FeatureStore

from features.retrieval import online_feature_rows


def parse_at(at: str | None, now: datetime | None = None) -> pd.Timestamp:
    """The request time: epoch seconds (``1767225600``), an ISO-8601 time with an offset
    (``2026-01-01T00:00:00Z``), or, when absent, now in whole seconds."""
    if at is None or at == "":
        now = now or datetime.now(timezone.utc)
        return pd.Timestamp(now.replace(microsecond=0)).tz_convert("UTC")
    text = at.strip()
    if text.lstrip("-").isdigit():
        return pd.Timestamp(int(text), unit="s", tz="UTC")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"at: expected epoch seconds or an ISO-8601 time such as 2026-01-01T00:00:00Z, "
                         f"got {at!r}") from None
    if t.tzinfo is None:
        raise ValueError(f"at: expected a timezone offset (e.g. a trailing Z), got naive {at!r}")
    return pd.Timestamp(t).tz_convert("UTC")


def _json_value(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (datetime, pd.Timestamp)):
        return pd.Timestamp(v).isoformat()
    if hasattr(v, "item"):  # numpy scalar
        return _json_value(v.item())
    return v


def create_app(store: FeatureStore) -> FastAPI:
    app = FastAPI(title="marketplace_health features", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/features/{customer_id}")
    def features(customer_id: str, at: str | None = Query(None, description="epoch seconds or ISO time")) -> dict:
        if not customer_id.strip():
            raise HTTPException(422, "customer_id: expected a non-empty id")
        try:
            t = parse_at(at)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        row = online_feature_rows(store, [customer_id], t)[0]
        return {"customer_id": customer_id, "at": t.isoformat(),
                "features": {k: _json_value(v) for k, v in row.items()}}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # lazy: the server is only needed when run as a program

    p = argparse.ArgumentParser(prog="python -m features.online_http", description=__doc__.splitlines()[0])
    p.add_argument("--repo", default="feature_repo", help="Feast repo folder (feature_store.yaml)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6567)
    args = p.parse_args(argv)
    uvicorn.run(create_app(FeatureStore(repo_path=args.repo)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
