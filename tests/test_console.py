"""The console over real HTTP (uvicorn on 127.0.0.1) on a small demo workspace: pages, escaping of
untrusted data, bounded queries, error pages, acknowledgements, and scores equal to `mhp score`."""
from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from console.alert_feed import ensure_id
from console.server import build_console
from core.times import isoformat_z
from core.workspace import Workspace
from mhp.cli import main
from serving.alerts import alert_id
from testing.console_workspace import EVIL_ID


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post(url: str, fields: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req) as resp:   # follows the 303 back to the page
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def customer_url(base: str, cid: str, **query) -> str:
    return f"{base}/customers/{urllib.parse.quote(cid, safe='')}" + ("?" + urllib.parse.urlencode(query) if query else "")


def test_alerts_page_lists_filters_and_paginates(running):
    feed = running.console.alerts.all()
    assert len(feed) >= 2
    status, body = get(running.url + "/alerts?limit=1")
    assert status == 200 and f"{len(feed)} alert(s); showing 1–1" in body
    assert body.count('class="alert"') == 1 and 'id="next-page"' in body
    kind = feed[0]["type"]
    status, body = get(running.url + "/alerts?" + urllib.parse.urlencode({"type": kind, "limit": 200}))
    shown = re.findall(r'data-alert-id="([0-9a-f]+)"', body)
    assert sorted(shown) == sorted(a["alert_id"] for a in feed if a["type"] == kind)[:200]
    day = feed[0]["as_of"][:10]                                       # the latest day's alerts ("today")
    status, body = get(running.url + f"/alerts?day={day}&limit=200")
    shown = re.findall(r'data-alert-id="([0-9a-f]+)"', body)
    assert sorted(shown) == sorted(a["alert_id"] for a in feed if a["as_of"].startswith(day))
    assert get(running.url + "/alerts?day=tomorrow")[0] == 400


@pytest.mark.parametrize("query,needle", [("limit=500", "limit: expected 1..200"), ("limit=x", "limit: expected an integer"),
                                          ("offset=-1", "offset: expected 0..")])
def test_unbounded_or_bad_queries_get_a_clear_error_page(running, query, needle):
    status, body = get(running.url + "/alerts?" + query)
    assert status == 400 and needle in body and "<title>Bad request" in body


def test_unknown_customer_and_bad_time_get_error_pages(running):
    status, body = get(customer_url(running.url, "nobody-here"))
    assert status == 404 and "Unknown customer" in body and "nobody-here" in body
    known = running.console.alerts.all()[0]["customer_id"]
    status, body = get(customer_url(running.url, known, at="yesterday"))
    assert status == 400 and "at: expected an ISO-8601 time" in body
    assert get(running.url + "/reports/..%2F..%2Fetc/passwd")[0] == 404
    assert get(running.url + "/reports/reports/nope.html")[0] == 404


def test_untrusted_customer_id_and_event_fields_are_escaped(running, console_workspace):
    status, body = get(customer_url(running.url, EVIL_ID))
    assert status == 200
    assert "<script>" not in body and "<img src=x" not in body
    assert html.escape(EVIL_ID, quote=False) in body.replace("&#34;", '"')          # the id, shown as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in body                           # the event field, as text
    status, body = get(running.url + "/alerts?limit=200")
    assert status == 200 and "<script>" not in body and "&lt;script&gt;" in body
    # the link to that customer is percent-encoded, not markup
    assert 'href="/customers/%3Cscript%3Ealert%28%22id%22%29%3C%2Fscript%3E"' in body
    status, body = get(running.url + "/customer?" + urllib.parse.urlencode({"id": EVIL_ID}))
    assert status == 200 and "<script>" not in body
    assert running.console.scorer  # the page scored through the live path; the store knows nothing of it


def test_customer_scores_equal_mhp_score_at_the_same_time(running, console_workspace, capsys):
    _, end, _ = console_workspace
    cid = next(a["customer_id"] for a in running.console.alerts.all() if a["customer_id"] != EVIL_ID)
    status, body = get(customer_url(running.url, cid, at=isoformat_z(end)))
    assert status == 200
    shown = {h: float(v) for h, v in re.findall(r'id="score-(\w+)" data-value="([^"]+)"', body)}
    assert main(["score", "--customer", cid, "--at", isoformat_z(end), "--no-alerts", "--workspace",
                 str(console_workspace[0]), "--endpoint-url", running.console.config.endpoint_url]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(shown) == {"churn_risk_30d", "ib_call_risk_14d", "customer_health_score"}
    for head, value in shown.items():
        assert value == pytest.approx(expected[head], abs=1e-6), head
    # the page's other parts: history chart, the 7 categories, recent events
    assert "<svg class='chart'" in body and "Recent events" in body
    for cat in ("window", "recency", "lifetime", "tutor", "subject", "segment", "trend"):
        assert f"<h3>{cat} " in body, cat


def test_acknowledging_is_idempotent_and_durable(running, console_workspace):
    root, end, _ = console_workspace
    target = running.console.alerts.all()[-1]
    aid = target["alert_id"]
    status, body = post(f"{running.url}/alerts/{aid}/ack", {"by": "dana", "note": "called them", "back": "/alerts?limit=200"})
    assert status == 200 and "✔ dana" in body
    status, _ = post(f"{running.url}/alerts/{aid}/ack", {"by": "someone else", "back": "/alerts"})
    assert status == 200
    assert running.console.acks.get([aid])[aid].acked_by == "dana" and running.console.acks.count() == 1
    assert post(f"{running.url}/alerts/{'0' * 24}/ack", {"by": "x"})[0] == 404
    forged = urllib.request.Request(f"{running.url}/alerts/{running.console.alerts.all()[0]['alert_id']}/ack",
                                    data=b"by=evil", method="POST", headers={"Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged)
    assert refused.value.code == 403 and running.console.acks.count() == 1
    # a new console process on the same workspace sees it
    again, inference = build_console(Workspace.local(root), at=end)
    try:
        assert again.acks.get([aid])[aid].note == "called them"
    finally:
        again.close()
        inference.stop()


def test_alert_lines_without_id_get_the_serving_derivation(console_workspace, running):
    _, _, evil_alert = console_workspace
    from datetime import datetime

    derived = ensure_id(evil_alert)["alert_id"]
    assert derived == alert_id(EVIL_ID, "churn_risk_high", datetime.fromisoformat(evil_alert["as_of"].replace("Z", "+00:00")),
                               "churn_model_v1-untrusted")
    assert running.console.alerts.by_id(derived)["customer_id"] == EVIL_ID


def test_overview_shows_counts_distributions_and_report_verdicts(running):
    status, body = get(running.url + "/overview")
    assert status == 200
    assert "Alerts per day and rule" in body and "churn_risk_30d distribution" in body
    assert 'href="/reports/drift/drift.csv"' in body and 'href="/reports/reports/event_log.html"' in body
    assert re.search(r'class="PASSED">PASSED<', body)
    status, report = get(running.url + "/reports/reports/event_log.html")
    assert status == 200 and "PASSED" in report


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["console", "--workspace", str(tmp_path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["console", "--workspace", str(tmp_path), "--port", "0"]) == 2
    assert "no model at" in capsys.readouterr().err
