"""A compact, self-contained data-docs style HTML report of one gate run.

GX's own Data Docs come from the file-backed GX project (validation/data_docs.py,
``run_gate(data_docs_dir=...)``); this single page is rendered from ``GateResult``
for callers that want one self-contained file: one row per expectation (pass/fail, column, condition, observed values) and a
table of sample offending rows under each failure.
"""
from __future__ import annotations

import html
from pathlib import Path

from validation.results import GateResult

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} .ok{color:#1a7f37} .bad{color:#c62828}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
tr.fail{background:#fdecea} th{background:#f4f4f4} code{font-size:.95em}
.samples{margin:.2em 0 .6em 1.5em} details{margin:0}
"""


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def write_report(result: GateResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    status = '<span class="ok">PASSED</span>' if result.success else '<span class="bad">FAILED</span>'
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(result.suite_name)} validation</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>Suite <code>{_e(result.suite_name)}</code>: {status}</h1>",
           f"<p>{len(result.outcomes)} expectations, {len(result.failures)} failed; {result.row_count:,} rows; "
           f"engine {_e(result.engine)}; {result.seconds:.2f}s.</p>"]
    ordered = result.failures + [o for o in result.outcomes if o.success]
    out.append("<table><tr><th>result</th><th>expectation</th><th>column</th><th>where</th>"
               "<th>observed</th><th>why</th></tr>")
    for o in ordered:
        cls = "" if o.success else " class='fail'"
        mark = "<span class='ok'>pass</span>" if o.success else "<span class='bad'>FAIL</span>"
        out.append(f"<tr{cls}><td>{mark}</td><td><code>{_e(o.expectation_type)}</code></td><td>{_e(o.column)}</td>"
                   f"<td>{_e(o.condition)}</td><td>{_e(o.observed)}</td><td>{_e(o.why)}</td></tr>")
        if not o.success and o.sample_rows:
            keys = list(dict.fromkeys(k for r in o.sample_rows for k in r))
            rows = "".join("<tr>" + "".join(f"<td>{_e(r.get(k))}</td>" for k in keys) + "</tr>" for r in o.sample_rows)
            out.append(f"<tr{cls}><td></td><td colspan='5'><details open><summary>sample offending rows</summary>"
                       f"<table class='samples'><tr>{''.join(f'<th>{_e(k)}</th>' for k in keys)}</tr>{rows}</table>"
                       f"</details></td></tr>")
    out.append("</table></body></html>")
    path.write_text("\n".join(out), encoding="utf-8")
    return path
