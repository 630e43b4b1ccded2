"""Daily batch scoring: every active customer, so customers who go silent are still caught.

Silence triggers no event, hence no hook call; yet the online store's windows decay on
schedule (day ticks), so scoring everyone once a day at a fixed event time sees it.

Active at ``at`` = signed up at or before ``at`` and no ``subscription_cancelled`` after
their latest signup (one set-based DuckDB query over the event log, local or s3://).
"""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from features.backfill import connect

from .service import Outcome, ScoringService
from .state import to_us


def active_customers(events_uri: str, at: datetime) -> list[str]:

    con = connect(events_uri)
    glob = events_uri.rstrip("/") + "/**/*.parquet"
    rows = con.execute(f"""
        SELECT customer_id FROM (
            SELECT customer_id,
                   MAX(CASE WHEN event_type = 'customer_signup' THEN tsu END) AS signup,
                   MAX(CASE WHEN event_type = 'subscription_cancelled' THEN tsu END) AS cancelled
            FROM (SELECT customer_id, event_type, epoch_us("timestamp") AS tsu
                  FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)
                  WHERE customer_id IS NOT NULL
                    AND event_type IN ('customer_signup', 'subscription_cancelled'))
            WHERE tsu <= ?
            GROUP BY customer_id)
        WHERE signup IS NOT NULL AND (cancelled IS NULL OR cancelled < signup)
        ORDER BY customer_id""", [to_us(at)]).fetchall()
    return [r[0] for r in rows]


def score_all(service: ScoringService, customer_ids: Sequence[str], at: datetime, chunk: int = 256) -> Outcome:
    """Score ``customer_ids`` at ``at`` in chunks (one Feast read + one endpoint call per chunk);
    rank rules' cuts come from this population (``ScoringService.score_day``)."""
    return service.score_day(customer_ids, at, chunk)
