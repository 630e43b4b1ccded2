"""`mhp validate events|features|dataset` and `mhp drift`.

Exit codes: 0 passed, 1 a gate failed (the failure summary is printed),
2 bad arguments (``mhp.cli.UsageError``: names the argument and what was expected).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.errors import UsageError
from core.times import parse_utc_time

DEFAULT_REPORT_DIR = Path("out") / "validation"


def register(subparsers) -> None:
    v = subparsers.add_parser("validate", help="run a data-quality gate (Great Expectations suite) on a table")
    vs = v.add_subparsers(dest="target", metavar="TARGET")
    vs.required = True

    def common(p):
        p.add_argument("--input", required=True, help="Parquet file/directory, .jsonl or .csv")
        p.add_argument("--report", help="HTML report path (default out/validation/<suite>.html)")
        p.add_argument("--engine", choices=("auto", "gx", "duckdb"), default="auto")
        p.add_argument("--data-docs", help="GX project folder: stored suites, checkpoints and the Data Docs site "
                                           "(index at <dir>/gx/uncommitted/data_docs/local_site/index.html; "
                                           "default: the --report's folder)")
        p.set_defaults(func=_validate)

    e = vs.add_parser("events", help="the raw event log, against the event contract")
    common(e)
    e.add_argument("--start", help="earliest allowed event timestamp (ISO-8601 with offset)")
    e.add_argument("--end", help="latest allowed event timestamp (ISO-8601 with offset)")
    f = vs.add_parser("features", help="a feature snapshot table, against the feature catalog")
    common(f)
    f.add_argument("--specs", help="JSON list of column specs {name, kind, nullable, min, max} instead of the catalog")
    f.add_argument("--view", help="catalog table/view name, passed to features.catalog.column_specs")
    f.add_argument("--entity-key", default="customer_id")
    d = vs.add_parser("dataset", help="a point-in-time training set")
    common(d)
    d.add_argument("--specs", help="JSON list of feature column specs to check as well")
    d.add_argument("--label-rate", action="append", default=[], metavar="LABEL=MIN:MAX",
                   help="allowed positive rate of a label, e.g. churn_30d=0.01:0.4 (repeatable)")
    d.add_argument("--min-rows", action="append", default=[], metavar="SPLIT=N",
                   help="minimum rows of a split, e.g. train=1000 (repeatable)")
    d.add_argument("--ts-columns", help="comma-separated feature timestamp columns (default: columns ending in __ts)")
    d.add_argument("--entity-key", default="customer_id")

    dr = subparsers.add_parser("drift", help="serving drift: PSI of served features vs the training set")
    dr.add_argument("--reference", required=True, help="training set (Parquet/JSONL/CSV)")
    dr.add_argument("--serving", required=True, help="serving log (JSONL or Parquet): customer_id, request_time, features")
    dr.add_argument("--out", default=str(Path("out") / "drift"), help="directory for drift.csv and drift.png")
    dr.add_argument("--top", type=int, default=6, help="features to print and plot")
    dr.add_argument("--features", help="comma-separated features (default: all shared feature columns)")
    dr.set_defaults(func=_drift)


def _read_table(path: str, arg: str):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise UsageError(f"{arg}: {path!r} does not exist (expected a Parquet file/directory, .jsonl or .csv)")
    try:
        if p.suffix in (".jsonl", ".json", ".ndjson"):
            return pd.read_json(p, lines=True)
        if p.suffix == ".csv":
            return pd.read_csv(p)
        return pd.read_parquet(p)
    except Exception as exc:  # unreadable input is a usage problem, not a gate failure
        raise UsageError(f"{arg}: cannot read {path!r} as a table: {exc}") from None


def _timestamp(value: str | None, arg: str):

    return None if value is None else parse_utc_time(value, arg)


def _load_specs(path: str):
    from validation.specs import ColumnSpec  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--specs: {path!r} does not exist (expected a JSON list of column specs)")
    try:
        raw = json.loads(p.read_text())
        return [ColumnSpec.from_dict(d) for d in raw]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--specs: expected a JSON list of {{name, kind, nullable, min, max}}: {exc}") from None


def _catalog_specs(view: str | None):
    try:
        import features.catalog as catalog  # lazy: the catalog is developed separately
    except ModuleNotFoundError as exc:
        if exc.name not in ("features.catalog", "features"):
            raise
        raise UsageError("the feature catalog (features/catalog.py) is not available; "
                         "pass --specs FILE.json with the column specs instead") from None
    from validation.specs import ColumnSpec  # lazy: loaded only when this command runs (keeps `mhp --help` light)

    try:
        return [ColumnSpec.from_dict(d) for d in catalog.column_specs(view)]
    except ValueError as exc:
        raise UsageError(f"--view: {exc}") from None


def _pairs(values: list[str], arg: str, parse):
    out = {}
    for v in values:
        if "=" not in v:
            raise UsageError(f"{arg}: expected NAME=VALUE, got {v!r}")
        k, val = v.split("=", 1)
        try:
            out[k] = parse(val)
        except ValueError:
            raise UsageError(f"{arg}: bad value in {v!r}") from None
    return out


def _rate(v: str):
    lo, hi = v.split(":")
    lo, hi = float(lo), float(hi)
    if not 0 <= lo <= hi <= 1:
        raise ValueError(v)
    return lo, hi


def _validate(args) -> int:
    from validation import suites  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    from validation.gate import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        DataQualityError,
        run_gate,
    )

    if args.target == "events":
        start, end = _timestamp(args.start, "--start"), _timestamp(args.end, "--end")
        df = _read_table(args.input, "--input")
        suite = suites.event_log_suite(start, end)
    elif args.target == "features":
        specs = _load_specs(args.specs) if args.specs else _catalog_specs(args.view)
        df = _read_table(args.input, "--input")
        suite = suites.feature_suite(specs, entity_key=args.entity_key)
    else:
        rates = _pairs(args.label_rate, "--label-rate", _rate)
        unknown = set(rates) - set(suites.LABEL_COLUMNS)
        if unknown:
            raise UsageError(f"--label-rate: unknown label(s) {sorted(unknown)}; expected {list(suites.LABEL_COLUMNS)}")
        min_rows = _pairs(args.min_rows, "--min-rows", int)
        unknown = set(min_rows) - set(suites.SPLITS)
        if unknown:
            raise UsageError(f"--min-rows: unknown split(s) {sorted(unknown)}; expected {list(suites.SPLITS)}")
        specs = _load_specs(args.specs) if args.specs else []
        df = _read_table(args.input, "--input")
        suite = suites.training_set_suite(
            df.columns, feature_specs=specs,
            feature_timestamp_columns=args.ts_columns.split(",") if args.ts_columns else None,
            label_rates={**suites.DEFAULT_LABEL_RATES, **rates},
            min_rows_per_split={**suites.DEFAULT_MIN_ROWS_PER_SPLIT, **min_rows}, entity_key=args.entity_key)
    report = args.report or str(DEFAULT_REPORT_DIR / f"{suite.name}.html")
    try:
        result = run_gate(suite.name, df, suite, report_path=report, engine=args.engine,
                          data_docs_dir=args.data_docs or Path(report).parent)
    except DataQualityError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(result.summary())
    print(f"report: {result.report_path}")
    print(f"data docs: {result.data_docs_path}")
    return 0


def _catalog_drift_roles():
    """(feature -> drift role, tenure column) from the feature catalog; none when it is absent."""
    try:
        from features import catalog  # lazy: loaded only when this command runs (keeps `mhp --help` light)
    except ModuleNotFoundError:
        return {}, None
    return catalog.drift_roles(), catalog.TENURE_FEATURE


def _drift(args) -> int:
    from validation.drift import (  # lazy: loaded only when this command runs (keeps `mhp --help` light)
        drift_report,
        load_serving_log,
        plot_drift,
    )

    if args.top < 1:
        raise UsageError(f"--top: expected a positive number of features, got {args.top}")
    ref = _read_table(args.reference, "--reference")
    if not Path(args.serving).exists():
        raise UsageError(f"--serving: {args.serving!r} does not exist (expected the serving log: JSONL or Parquet)")
    try:
        srv = load_serving_log(args.serving)   # drift_report gives it the reference's types
    except Exception as exc:  # unreadable or mistyped served log: a usage problem naming the column/line
        raise UsageError(f"--serving: cannot read {args.serving!r} as a serving log: {exc}") from None
    features = args.features.split(",") if args.features else None
    if features:
        missing = [f for f in features if f not in ref.columns or f not in srv.columns]
        if missing:
            raise UsageError(f"--features: {missing} not in both the reference and the serving log")
    roles, tenure = _catalog_drift_roles()
    try:
        table, detail = drift_report(ref, srv, features, roles=roles, tenure_column=tenure)
    except ValueError as exc:
        raise UsageError(f"--serving: {exc}") from None
    if table.empty:
        raise UsageError("--serving: no feature columns shared with --reference (expected the training set's names)")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create {args.out!r}: {exc.strerror}") from None
    table.to_csv(out / "drift.csv", index=False)
    png = plot_drift(detail, table, out / "drift.png", top=args.top)
    counts = table["verdict"].value_counts()
    print(f"drift of {len(table)} features, {len(srv):,} served rows vs {len(ref):,} training rows: "
          f"{counts.get('drifted', 0)} drifted, {counts.get('expected to move', 0)} expected to move "
          f"(grow with tenure), {counts.get('stable', 0)} stable")
    for verdict in ("drifted", "expected to move"):
        rows = table[table["verdict"] == verdict].head(args.top)
        if len(rows):
            print(f"{verdict} (worst {len(rows)}):")
            for r in rows.itertuples():
                print(f"  {r.feature:<40} {r.score:8.4f}  {r.method}")
    if not counts.get("drifted", 0):
        print("no feature drifted (PSI < 0.25 per customer feature; daily marketplace/subject values "
              "inside the training days' range)")
    print(f"table: {out / 'drift.csv'}\nplot: {png}")
    return 0
