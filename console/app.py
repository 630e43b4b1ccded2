"""The console's routes (FastAPI + Jinja2 templates with autoescape; charts are server-side SVG).

| route | page |
|---|---|
| `GET /alerts?type=&severity=&day=&offset=&limit=` | alerts, newest first, filterable (`day`: as-of date), paginated, with acknowledgement state |
| `POST /alerts/{alert_id}/ack` | acknowledge (idempotent; form fields `by`, `note`), then back to the list |
| `GET /customers/{id}?at=&events_offset=` | scores, score history, top features, feature vector, recent events |
| `GET /customer?id=` | the search box: redirects to the customer's page |
| `GET /overview` | alerts per day and rule, score distributions, drift / data-quality verdicts |
| `GET /reports/{folder}/{file}` | a report the overview links to (only files the overview lists) |

Everything from data is escaped by the templates; every list is bounded (``limit`` <= 200).
"""
from __future__ import annotations

import re
import time
import urllib.parse
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.times import isoformat_z
from serving.attribution import explain

from . import charts
from .context import CATEGORIES, HEAD_DIRECTION, HEAD_RANGE, HEADS, ON_DEMAND_VIEWS, Console

MAX_LIMIT = 200
MAX_ID = 128
TEMPLATES = Path(__file__).parent / "templates"


class PageError(Exception):
    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value in (None, ""):
        return default
    try:
        n = int(value)
    except ValueError:
        raise PageError(400, "Bad request", f"{name}: expected an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise PageError(400, "Bad request", f"{name}: expected {lo}..{hi}, got {n}")
    return n


def _at(console: Console, value: str | None) -> datetime:
    if not value:
        return console.default_at()
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PageError(400, "Bad request", f"at: expected an ISO-8601 time such as 2025-03-01T00:00:00Z, "
                                            f"got {value!r}") from None
    if t.tzinfo is None:
        raise PageError(400, "Bad request", f"at: the time needs an offset (e.g. Z), got {value!r}")
    return t.astimezone(timezone.utc)


def _customer_id(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_ID:
        raise PageError(400, "Bad request", f"customer id: expected 1..{MAX_ID} characters")
    return value


def create_app(console: Console) -> FastAPI:
    app = FastAPI(title="Marketplace Health console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["pct"] = lambda v: "" if v is None else f"{v:.0f}"
    templates.env.filters["num"] = _num
    templates.env.globals["customer_url"] = lambda cid: "/customers/" + quote(str(cid), safe="")

    def render(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        t0 = time.perf_counter()
        resp = templates.TemplateResponse(request, name, ctx, status_code=status)
        resp.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - t0) * 1000:.1f}"
        return resp

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError):
        return render(request, "error.html", exc.status, title=exc.title, message=exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        title = "Not found" if exc.status_code == 404 else "Error"
        return render(request, "error.html", exc.status_code, title=title, message=str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        msg = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return render(request, "error.html", 400, title="Bad request", message=msg)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        # nothing is loaded from elsewhere; inline styles only (no scripts at all)
        response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                       "img-src 'self'; form-action 'self'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/")
    def index():
        return RedirectResponse("/alerts", status_code=302)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts(request: Request, type: str = "", severity: str = "", day: str = "", offset: str | None = None,
               limit: str | None = None):
        off = _int(offset, "offset", 0, 0, 10**9)
        lim = _int(limit, "limit", 50, 1, MAX_LIMIT)
        if day and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise PageError(400, "Bad request", f"day: expected YYYY-MM-DD, got {day[:40]!r}")
        page = console.alerts.select(type_=type[:100], severity=severity[:100], day=day, offset=off, limit=lim)
        acks = console.acks.get(a["alert_id"] for a in page.items)
        base = {"type": type, "severity": severity, "day": day, "limit": lim}
        return render(request, "alerts.html", page=page, acks=acks, types=console.alerts.types(),
                      severities=console.alerts.severities(), type=type, severity=severity, day=day,
                      days=sorted({str(a.get("as_of", ""))[:10] for a in console.alerts.all()}, reverse=True)[:90],
                      prev_url=None if page.prev_offset is None else "/alerts?" + urlencode({**base, "offset": page.prev_offset}),
                      next_url=None if page.next_offset is None else "/alerts?" + urlencode({**base, "offset": page.next_offset}),
                      back=str(request.url.path) + ("?" + request.url.query if request.url.query else ""))

    @app.post("/alerts/{alert_id}/ack")
    async def acknowledge(request: Request, alert_id: str):
        origin = request.headers.get("origin")
        if origin and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            # a page elsewhere posting into the console (cross-site request forgery)
            raise PageError(403, "Forbidden", f"acknowledgements come from the console's own pages, not {origin!r}")
        body = await request.body()
        if len(body) > 4096:
            raise PageError(413, "Too large", "the acknowledgement form is limited to 4 KiB")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        by, note, back = form.get("by", ""), form.get("note", ""), form.get("back", "/alerts")
        if console.alerts.by_id(alert_id) is None:
            raise PageError(404, "Unknown alert", f"no alert with id {alert_id!r}")
        console.acks.acknowledge(alert_id, by, datetime.now(timezone.utc), note)  # when a person acted: wall clock
        # back to the page the form was on; only our own paths (no open redirect)
        target = back if back.startswith("/") and not back.startswith("//") else "/alerts"
        return RedirectResponse(target, status_code=303)

    @app.get("/customer")
    def search(id: str = ""):
        return RedirectResponse("/customers/" + quote(_customer_id(id), safe=""), status_code=303)

    @app.get("/customers/{customer_id:path}", response_class=HTMLResponse)
    def customer(request: Request, customer_id: str, at: str | None = None, events_offset: str | None = None):
        cid = _customer_id(customer_id)
        t = _at(console, at)
        ev_off = _int(events_offset, "events_offset", 0, 0, 10**9)
        if not console.events.known(cid) and not console.history.vectors(cid, 1):
            raise PageError(404, "Unknown customer", f"no customer {cid!r} in the event log or the served log")
        scored = console.score(cid, t)
        console.history.refresh()
        past = console.history.vectors(cid, 60)
        past_rows = [{c: v.get(c) for c in console.scorer.columns} for v in past]
        past_preds: list[dict] = []

        def invoke_with_history(rows: list[dict]) -> list[dict]:
            # the history rides along with the occlusion batch: one endpoint call instead of two
            extra = past_rows if not past_preds and past_rows else []
            preds = console.invoke(extra + rows)
            past_preds.extend(preds[:len(extra)])
            return preds[len(extra):]

        top = explain([scored.features], [scored.prediction], [[(h, HEAD_DIRECTION[h]) for h in HEADS]],
                      console.scorer.columns, invoke_with_history, top_k=5)[0]
        if past_rows and not past_preds:        # nothing to occlude: the history alone
            past_preds = console.invoke(past_rows)
        times = [str(v["request_time"]) for v in past] + [isoformat_z(t)]
        series = {h: [float(p[h]) for p in past_preds] + [float(scored.prediction[h])] for h in HEADS}
        stamps = console.view_timestamps(cid, t)
        groups: dict[str, list[dict]] = {c: [] for c in CATEGORIES}
        for name, value in scored.features.items():
            view = console.views.get(name, "")
            groups.setdefault(console.categories.get(name, "other"), []).append({
                "name": name, "value": value, "pct": console.history.percentile(name, value), "view": view,
                "updated": stamps.get(view) or ("computed at request time" if view in ON_DEMAND_VIEWS else "—")})
        for items in top.values():
            for f in items:
                f["pct"] = console.history.percentile(f["feature"], f["value"])
        events, n_events = console.events.recent(cid, t, limit=20, offset=ev_off)
        own = console.alerts.select(customer_id=cid, limit=20)
        base = {"at": isoformat_z(t)}
        ev_prev = None if ev_off == 0 else f"?{urlencode({**base, 'events_offset': max(0, ev_off - 20)})}"
        ev_next = f"?{urlencode({**base, 'events_offset': ev_off + 20})}" if ev_off + 20 < n_events else None
        return render(request, "customer.html", cid=cid, at=isoformat_z(t), scored=scored, heads=HEADS,
                      chart=Markup(charts.line_chart(times, series, HEAD_RANGE)), top=top, groups=groups,
                      events=events, n_events=n_events, events_offset=ev_off, ev_prev=ev_prev, ev_next=ev_next,
                      alerts=own, acks=console.acks.get(a["alert_id"] for a in own.items),
                      back=str(request.url.path) + ("?" + request.url.query if request.url.query else ""))

    @app.get("/overview", response_class=HTMLResponse)
    def overview(request: Request, days: str | None = None):
        n_days = _int(days, "days", 14, 1, 90)
        every = console.alerts.all()
        per_day: dict[str, Counter] = {}
        for a in every:
            per_day.setdefault(str(a.get("as_of", ""))[:10], Counter())[str(a.get("type"))] += 1
        day_rows = sorted(per_day.items(), reverse=True)[:n_days]
        rules = sorted({r for _, c in day_rows for r in c})
        pop = console.population_scores()
        dists = Markup("".join(charts.histogram(h, pop[h], *HEAD_RANGE[h]) for h in HEADS))
        by_rule = Counter(str(a.get("type")) for a in every)
        return render(request, "overview.html", day_rows=day_rows, rules=rules, dists=dists,
                      by_rule=Markup(charts.bar_rows(dict(by_rule.most_common()))), n_alerts=len(every),
                      n_acked=console.acks.count(), reports=console.reports.verdicts(),
                      population=len(pop[HEADS[0]]))

    @app.get("/reports/{folder}/{name}")
    def report(folder: str, name: str):
        path = console.reports.path(f"{folder}/{name}")
        if path is None:
            raise PageError(404, "Unknown report", f"no report {folder}/{name!r}")
        return FileResponse(path)

    return app


def _num(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
