"""One quiet, ephemeral Great Expectations context for the whole process.

Analytics and progress bars are switched off here, inside the library, so that
every caller (CLI, backfill, training, tests) gets neither phone-home traffic
nor progress bars on stderr without having to remember an environment variable.
"""
from __future__ import annotations

import os
import warnings

# Must be set before great_expectations is imported: GX reads it at import time.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402

_CONTEXT = None


def get_context():
    """The process-wide ephemeral context (nothing written to disk), progress bars off."""
    global _CONTEXT
    if _CONTEXT is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        _CONTEXT = ctx
    return _CONTEXT
