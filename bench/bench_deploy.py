"""Deploy images (issue 20): each image's dependency set and the ingester's import time.

* full run: every image of ``deploy.image_deps.IMAGES`` is installed into a fresh virtualenv
  (``pip install .[EXTRA]``, from the package index; torch from the machine's wheel folder)
  and measured there: installed size (site-packages growth) and the entry point's imports
  (handler modules + the Feast repo config the handler opens), min of 3 fresh interpreters;
  the ingester's is the stand-in for the Lambda cold start (goal <= 3 s);
* ``--quick``: no download: the same numbers from this venv, with everything outside the image's
  dependency closure unimportable (``deploy.image_deps.import_check``).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from deploy import image_deps as D

IMPORT_GOAL_S = 3.0


def run(quick: bool) -> list[dict]:
    rows: list[dict] = []
    if quick:
        for image in D.IMAGES:
            c = D.closure([image.extra])
            blocked = D.blocked_modules(c)
            times = [D.import_check(image.probe, blocked).seconds for _ in range(3)]
            rows.append(_row(image.name, f".[{image.extra}] installed size (this venv's versions)",
                             round(c.size_bytes() / 1e6), "MB"))
            rows += _import_rows(image.name, min(t for t in times if t is not None), "torch" in c)
        return rows
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        for image in D.IMAGES:
            r = D.fresh_install(image, Path(tmp))
            shutil.rmtree(Path(tmp) / f"venv-{image.name}", ignore_errors=True)
            rows.append(_row(image.name, f"pip install .[{image.extra}] into a fresh venv: installed size",
                             round(r["installed_mb"]), "MB",
                             goal="< 10,240 (Lambda image limit)" if image.name != "inference" else ""))
            rows.append(_row(image.name, "distributions installed", r["distributions"], ""))
            rows += _import_rows(image.name, r["import_s_min"], r["has_torch"])
    return rows


def _import_rows(image: str, seconds: float, has_torch: bool) -> list[dict]:
    if image != "ingester":
        return [_row(image, "entry-point imports (min of 3)", round(seconds, 2), "s")]
    return [
        _row(image, "handler import + Feast repo config, no torch (cold-start stand-in, min of 3)",
             round(seconds, 2), "s", goal=f"<= {IMPORT_GOAL_S:g}", ok=seconds <= IMPORT_GOAL_S),
        _row(image, "torch in the dependency set", "yes" if has_torch else "no", "", goal="no", ok=not has_torch),
    ]


def _row(image: str, metric: str, value, unit: str, goal: str = "", ok: bool | None = None) -> dict:
    row = {"benchmark": f"deploy image: {image}", "metric": metric, "value": value, "unit": unit}
    if goal:
        row["goal"] = goal
    if ok is not None:
        row["ok"] = ok
    return row
