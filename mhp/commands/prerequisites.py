"""Checks that a workspace is ready for a command, each failing with the command to run first."""
from __future__ import annotations

from core import storage
from core.errors import UsageError


def _hint(ws) -> str:
    flags = f" --workspace {ws.state}" + (f" --profile {ws.profile} --data-uri {ws.root}" if ws.profile != "local" else "")
    return flags


def require_backfill(ws) -> None:
    """The feature tables `mhp backfill` writes exist."""
    from features import catalog as C  # lazy: loaded only when a command runs (keeps `mhp --help` light)

    missing = [v for v in (C.CUSTOMER_VIEW, *C.BATCH_VIEWS)
               if not storage.exists(storage.join(ws.features, f"{v}.parquet"))]
    if missing:
        first = "run `mhp simulate` (or add an event log) and " if not storage.exists(ws.events) else "run "
        raise UsageError(f"--workspace: no feature tables under {ws.features} (missing {', '.join(missing)}); "
                         f"{first}`mhp backfill{_hint(ws)}` first")


def require_applied(store, ws) -> None:
    """The workspace's Feast registry holds the feature views (`mhp apply` ran)."""
    from features import catalog as C  # lazy: loaded only when a command runs (keeps `mhp --help` light)

    try:
        names = {v.name for v in store.list_feature_views()}
    except Exception:  # noqa: BLE001 - no registry yet reads as "not applied"
        names = set()
    if C.CUSTOMER_VIEW not in names:
        raise UsageError(f"--workspace: the Feast registry of {ws.state} has no feature views; "
                         f"run `mhp apply{_hint(ws)}` first")
