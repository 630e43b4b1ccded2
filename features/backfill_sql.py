"""The backfill's SQL, generated from the catalog once for every engine.

``customer_statements`` / ``group_statements`` / ``marketplace_statement`` return
``(table, query)`` pairs: the engine materializes each query as a table (DuckDB: a temp table;
Spark: a cached temp view) under that name, in order, and the last one of each is the snapshot
table. The input is a view ``ev`` (the customers' events; the runner may narrow it to a key
range) and ``ev_all`` (every event up to the horizon), both with ``tsu``: the event time in
integer microseconds since the epoch (UTC). Every construct the engines spell differently comes
from a ``features.sql_dialect.Dialect``; column lists are explicit, so the same text plan runs
on both (no per-engine copy of any statement).

Customer snapshots: one row per (customer, instant), where the instants are the customer's
distinct event timestamps plus every UTC midnight that falls within MAX_WINDOW_DAYS after one of
their events (capped at ``until``). Tutor, subject and marketplace snapshots: one row per group
per UTC midnight, over the complete days before it (docs/features.md).
"""
from __future__ import annotations

from core.times import DAY_US
from events.contract import SUBJECTS

from . import catalog as C
from .sql_dialect import Dialect

Statement = tuple[str, str]   # (table, query)


def q(name: str) -> str:
    """A quoted identifier (double quotes: DuckDB, and Spark with ``spark.sql.ansi.doubleQuotedIdentifiers``)."""
    return '"' + name.replace('"', '""') + '"'


def _string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _metric_sql(m: C.Metric, d: Dialect) -> str:
    # Integers (fractional values in fixed point, Metric.scale) held in DOUBLE: exact below 2**53,
    # so differences of running sums carry no rounding, in any order of summation.
    value = "1" if m.value is None else f"CAST(FLOOR({q(m.value)} * {m.scale} + {d.double(0.5)}) AS BIGINT)"
    if m.per_day == "any":
        return f"CAST(MAX(CASE WHEN {m.source.sql()} THEN 1 ELSE 0 END) AS DOUBLE)"
    return f"CAST(SUM(CASE WHEN {m.source.sql()} THEN {value} ELSE 0 END) AS DOUBLE)"


def _value(metric: str, raw: str, d: Dialect) -> str:
    """A metric's accumulated integer in its own unit (the generated state.snapshot divides the same way)."""
    scale = C.METRIC_BY_NAME[metric].scale
    return raw if scale == 1 else f"({raw} / {d.double(scale)})"


def _window_pairs() -> list[tuple[str, int]]:
    pairs: dict[tuple[str, int], None] = {}
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.WindowSum):
            pairs[(f.metric, f.days)] = None
        elif isinstance(f, C.WindowRatio):
            pairs[(f.num, f.days)] = None
            pairs[(f.den, f.days)] = None
    return list(pairs)


def _lifetime_metrics() -> list[str]:
    names: dict[str, None] = {}
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.LifetimeSum):
            names[f.metric] = None
        elif isinstance(f, C.LifetimeRatio):
            names[f.num] = names[f.den] = None
        elif isinstance(f, C.PrimaryShare):
            names[f.total_metric] = None
    return list(names)


def _instant_features() -> list[C.CustomerFeature]:
    """The features with a per-instant helper column ``i_<name>``."""
    return [f for f in C.CUSTOMER_FEATURES if isinstance(f, (C.FirstAbove, C.LatestValue, C.LastSeen))]


def customer_statements(until_us: int, d: Dialect) -> list[Statement]:
    """Statements that leave the customer snapshot table in ``customer_snapshots`` (ordered by key, time)."""
    metrics = C.METRICS
    inst_cols = [f"{_metric_sql(m, d)} AS {q('m_' + m.name)}" for m in metrics]
    for f in _instant_features():
        field, where = q(getattr(f, "field", "")), f.source.sql()
        if isinstance(f, C.FirstAbove):
            expr = d.arg_min(field, "event_id", f"{where} AND {field} IS NOT NULL")
        elif isinstance(f, C.LatestValue):
            expr = d.arg_max(field, "event_id", f"{where} AND {field} IS NOT NULL")
        else:
            expr = f"MAX(tsu) FILTER (WHERE {where})"
        inst_cols.append(f"{expr} AS {q('i_' + f.name)}")
    inst_names = [q("i_" + f.name) for f in _instant_features()]
    zero_cols = [f"0 AS {q('m_' + m.name)}" for m in metrics]
    null_cols = [f"NULL AS {n}" for n in inst_names]

    # A per-day "any" metric becomes additive: 1 at the customer's first matching instant of the day.
    def additive(m: C.Metric) -> str:
        c = q("m_" + m.name)
        if m.per_day != "any":
            return c
        return (f"CASE WHEN {c} > 0 AND tsu = MIN(CASE WHEN {c} > 0 THEN tsu END) "
                f"OVER (PARTITION BY customer_id, day) THEN 1 ELSE 0 END AS {c}")

    stmts = [
        ("cust_inst", f"""SELECT customer_id, tsu, {d.int_div('tsu', str(DAY_US))} AS day, {', '.join(inst_cols)}
            FROM ev WHERE customer_id IS NOT NULL GROUP BY customer_id, tsu"""),
        # Day-boundary ticks: decay happens at midnights, while any window can still change.
        ("cust_snap", f"""WITH active AS (
              SELECT customer_id, day, LEAD(day) OVER (PARTITION BY customer_id ORDER BY day) AS next_day
              FROM (SELECT DISTINCT customer_id, day FROM cust_inst) days),
            ticks AS (  -- the midnights within MAX_WINDOW_DAYS after an active day
              SELECT customer_id, {d.range_rows('day + 1', f'''LEAST(COALESCE(next_day, day + {C.MAX_WINDOW_DAYS}),
                                              day + {C.MAX_WINDOW_DAYS}, {until_us // DAY_US}) + 1''')} AS day
              FROM active)
            SELECT customer_id, tsu, day, {', '.join([additive(m) for m in metrics] + inst_names)} FROM cust_inst
            UNION ALL
            SELECT t.customer_id, t.day * {DAY_US} AS tsu, t.day, {', '.join(zero_cols + null_cols)}
            FROM ticks t {d.anti_join()} cust_inst i ON i.customer_id = t.customer_id AND i.tsu = t.day * {DAY_US}"""),
    ]

    # A window is a difference of running sums: value(t) = running(t) - through_day(day(t) - N),
    # where through_day(d) sums all days <= d. LAG by rows equals the by-day lookup: rows are dense
    # for MAX_WINDOW_DAYS after every active day, and the rows a gap skips carry only zero ticks.
    assert max(n for _, n in _window_pairs()) <= C.MAX_WINDOW_DAYS
    used = list(dict.fromkeys(m for m, _ in _window_pairs()))
    through_cols = [f"SUM(SUM({q('m_' + m)})) OVER (PARTITION BY customer_id ORDER BY day ROWS UNBOUNDED PRECEDING) "
                    f"AS {q('d_' + m)}" for m in used]
    lag_names = [q(f"l{n}_{m}") for m, n in _window_pairs()]
    lag_cols = [f"COALESCE(LAG({q('d_' + m)}, {n}) OVER w, 0) AS {q(f'l{n}_{m}')}" for m, n in _window_pairs()]
    stmts.append(("cust_lag", f"""SELECT customer_id, day, {', '.join(lag_cols)} FROM (
          SELECT customer_id, day, {', '.join(through_cols)} FROM cust_snap GROUP BY 1, 2) through_day
        WINDOW w AS (PARTITION BY customer_id ORDER BY day)"""))

    # Event-level helpers: the primary key's leader per instant, and distinct-in-window deltas.
    extra_ctes, extra_joins, extra_cols = [], [], []
    for f in C.CUSTOMER_FEATURES:
        if isinstance(f, C.PrimaryKey):
            a = "pk_" + f.name
            extra_ctes.append(f"""{a} AS (
                SELECT customer_id, tsu, {d.arg_max('key', 'event_id', 'cnt = top')} AS leader, MAX(top) AS top
                FROM (
                  SELECT *, MAX(cnt) OVER (PARTITION BY customer_id ORDER BY tsu, event_id
                                           ROWS UNBOUNDED PRECEDING) AS top
                  FROM (
                    SELECT customer_id, tsu, event_id, {q(f.field)} AS key,
                           COUNT(*) OVER (PARTITION BY customer_id, {q(f.field)} ORDER BY tsu, event_id
                                          ROWS UNBOUNDED PRECEDING) AS cnt
                    FROM ev WHERE customer_id IS NOT NULL AND {f.source.sql()}) counted) ranked
                GROUP BY 1, 2)""")
            extra_joins.append(f"LEFT JOIN {a} USING (customer_id, tsu)")
            extra_cols += [f"{a}.leader AS {q('pl_' + f.name)}", f"{a}.top AS {q('pt_' + f.name)}"]
        elif isinstance(f, C.DistinctInWindow):
            a = "dw_" + f.name
            # Key k counts from its first event on day d until midnight of d + N, merged across days.
            extra_ctes.append(f"""kd_{f.name} AS (
                SELECT customer_id, key, day, first_tsu, LAG(day) OVER w AS prev_day, LEAD(day) OVER w AS next_day
                FROM (
                  SELECT customer_id, {q(f.field)} AS key, {d.int_div('tsu', str(DAY_US))} AS day, MIN(tsu) AS first_tsu
                  FROM ev WHERE customer_id IS NOT NULL AND {f.source.sql()} GROUP BY 1, 2, 3) key_days
                WINDOW w AS (PARTITION BY customer_id, key ORDER BY day))""")
            extra_ctes.append(f"""{a} AS (
                SELECT customer_id, tsu, SUM(delta) AS delta FROM (
                  SELECT customer_id, first_tsu AS tsu, 1 AS delta FROM kd_{f.name}
                  WHERE prev_day IS NULL OR day - prev_day >= {f.days}
                  UNION ALL
                  SELECT customer_id, (day + {f.days}) * {DAY_US} AS tsu, -1 AS delta FROM kd_{f.name}
                  WHERE next_day IS NULL OR next_day - day >= {f.days}) deltas
                GROUP BY 1, 2)""")
            extra_joins.append(f"LEFT JOIN {a} USING (customer_id, tsu)")
            extra_cols.append(f"COALESCE({a}.delta, 0) AS {q('dd_' + f.name)}")

    running = "OVER (PARTITION BY customer_id ORDER BY tsu ROWS UNBOUNDED PRECEDING)"
    sel = ["customer_id", "tsu", "day"]
    sel += [f"SUM({q('m_' + m)}) {running} AS {q('c_' + m)}"
            for m in dict.fromkeys(used + _lifetime_metrics())]
    for f in C.CUSTOMER_FEATURES:
        v = q("v_" + f.name)
        if isinstance(f, C.FirstAbove):
            sel.append(f"{d.first_ignore_nulls(q('i_' + f.name))} {running} AS {v}")
        elif isinstance(f, C.LatestValue):
            sel.append(f"{d.last_ignore_nulls(q('i_' + f.name))} {running} AS {v}")
        elif isinstance(f, C.LastSeen):
            sel.append(f"MAX({q('i_' + f.name)}) {running} AS {v}")
        elif isinstance(f, C.PrimaryKey):
            sel.append(f"{d.last_ignore_nulls(q('pl_' + f.name))} {running} AS {v}")
            sel.append(f"COALESCE(MAX({q('pt_' + f.name)}) {running}, 0) AS {q('top_' + f.name)}")
        elif isinstance(f, C.DistinctInWindow):
            sel.append(f"SUM({q('dd_' + f.name)}) {running} AS {v}")
    sel_names = [s.rsplit(" AS ", 1)[-1] for s in sel]

    def win(metric: str, n: int) -> str:
        return _value(metric, f"({q('c_' + metric)} - {q(f'l{n}_{metric}')})", d)

    def life(metric: str) -> str:
        return _value(metric, q("c_" + metric), d)

    def as_double(expr: str) -> str:
        return d.cast(expr, "DOUBLE")

    out = ["customer_id", f"{d.timestamp_us('tsu')} AS event_timestamp"]
    for f in C.CUSTOMER_FEATURES:
        n = q(f.name)
        if isinstance(f, C.WindowSum):
            expr = f"{as_double(win(f.metric, f.days))} / {f.days}" if f.per_day else win(f.metric, f.days)
            out.append(f"{d.cast(expr, 'BIGINT' if f.dtype == 'int64' else 'DOUBLE')} AS {n}")
        elif isinstance(f, C.WindowRatio):
            den = win(f.den, f.days)
            out.append(f"CASE WHEN {den} > 0 THEN {as_double(win(f.num, f.days))} / {den} END AS {n}")
        elif isinstance(f, C.LifetimeSum):
            out.append(f"{d.cast(life(f.metric), 'BIGINT' if f.dtype == 'int64' else 'DOUBLE')} AS {n}")
        elif isinstance(f, C.LifetimeRatio):
            den = life(f.den)
            out.append(f"CASE WHEN {den} > 0 THEN {as_double(life(f.num))} / {den} END AS {n}")
        elif isinstance(f, C.FirstAbove):
            out.append(f"({q('v_' + f.name)} > {d.double(f.threshold)}) AS {n}")
        elif isinstance(f, C.LatestValue):
            out.append(f"{d.cast(q('v_' + f.name), 'BIGINT' if f.dtype == 'int64' else 'STRING')} AS {n}")
        elif isinstance(f, C.LastSeen):
            out.append(f"{d.cast(q('v_' + f.name), 'BIGINT')} AS {n}")
        elif isinstance(f, C.PrimaryKey):
            out.append(f"{q('v_' + f.name)} AS {n}")
        elif isinstance(f, C.PrimaryShare):
            den = q("c_" + f.total_metric)
            out.append(f"CASE WHEN {den} > 0 THEN {as_double(q('top_' + f.primary))} / {den} END AS {n}")
        elif isinstance(f, C.DistinctInWindow):
            out.append(f"{d.cast(q('v_' + f.name), 'BIGINT')} AS {n}")
        else:  # pragma: no cover
            raise TypeError(f"no set-based rule for {type(f).__name__}")

    ctes = ("WITH " + ",\n".join(extra_ctes) + ",\n") if extra_ctes else "WITH "
    snap_cols = ["customer_id", "tsu", "day"] + [q("m_" + m.name) for m in metrics] + inst_names
    stmts.append(("customer_rows", f"""{ctes} base AS (
          SELECT {', '.join('s.' + c for c in snap_cols)}{''.join(', ' + c for c in extra_cols)}
          FROM cust_snap s {' '.join(extra_joins)}),
        acc AS (SELECT {', '.join(['a.' + c for c in sel_names] + ['l.' + c for c in lag_names])}
                FROM (SELECT {', '.join(sel)} FROM base) a
                JOIN cust_lag l ON l.customer_id = a.customer_id AND l.day = a.day)
        SELECT {', '.join(out)} FROM acc"""))
    # Sorted apart: a distributed sort samples its input first, which then need not be computed twice.
    stmts.append(("customer_snapshots", "SELECT * FROM customer_rows ORDER BY customer_id, event_timestamp"))
    return stmts


def group_statements(table: str, key: str, metrics: tuple[C.GroupMetric, ...],
                     features: list[tuple[str, C.GroupFeature]], first_day: int, until_day: int, d: Dialect,
                     all_subjects: bool = False) -> list[Statement]:
    """Snapshots at every midnight d in (first_day, until_day] over the complete days [d - N, d).

    One row per group and day: every declared subject with ``all_subjects`` (the subject view),
    otherwise every group seen in the log."""
    additive = [m for m in metrics if m.distinct is None]
    distinct = [m for m in metrics if m.distinct is not None]
    windows = sorted({f.days for _, f in features})
    by = q(metrics[0].group_by)
    day = d.int_div("tsu", str(DAY_US))
    groups = (f"SELECT grp FROM (VALUES {', '.join(f'({_string(s)})' for s in SUBJECTS)}) AS subjects(grp)" if all_subjects
              else f"SELECT DISTINCT {by} AS grp FROM ev_all WHERE {by} IS NOT NULL")
    grid = f"""SELECT g.grp, d.day FROM ({groups}) g
               CROSS JOIN (SELECT {d.range_rows(str(first_day), str(until_day + 1))} AS day) d"""
    # Sums of values in fixed point (integers, exact in any order of summation, like the customer
    # metrics): a sum of doubles would depend on the engine's order of addition in its last bits.
    def amount(m: C.GroupMetric) -> str:
        return "1" if m.value is None else f"CAST(FLOOR({q(m.value)} * {C.FIXED_POINT} + {d.double(0.5)}) AS BIGINT)"

    daily = ", ".join(f"SUM(CASE WHEN {m.source.sql()} THEN {amount(m)} ELSE 0 END) AS {q(m.name)}" for m in additive)
    win_cols = [
        f"SUM({q(m.name)}) OVER (PARTITION BY grp ORDER BY day RANGE BETWEEN {n} PRECEDING AND 1 PRECEDING) "
        f"AS {q(f'{m.name}_{n}')}" for m in additive for n in windows]
    stmts = [(f"{table}_win", f"""WITH daily AS (
          SELECT {by} AS grp, {day} AS day, {daily}
          FROM ev_all WHERE {by} IS NOT NULL GROUP BY 1, 2),
        dense AS (SELECT grid.grp, grid.day, {', '.join('daily.' + q(m.name) for m in additive)}
                  FROM ({grid}) grid LEFT JOIN daily ON daily.grp = grid.grp AND daily.day = grid.day)
        SELECT grp, day, {', '.join(win_cols)} FROM dense""")]
    win_names = [q(f"{m.name}_{n}") for m in additive for n in windows]
    for m in distinct:
        for n in windows:
            stmts.append((f"{table}_d_{m.name}_{n}", f"""WITH present AS (
                  SELECT DISTINCT {q(m.group_by)} AS grp, {q(m.distinct)} AS item, {day} AS day
                  FROM ev_all WHERE {m.source.sql()})
                SELECT grid.grp, grid.day, COUNT(DISTINCT present.item) AS {q(f'{m.name}_{n}')}
                FROM ({grid}) grid LEFT JOIN present
                  ON present.grp = grid.grp AND present.day >= grid.day - {n} AND present.day < grid.day
                GROUP BY 1, 2"""))
            win_names.append(f"{table}_d_{m.name}_{n}.{q(f'{m.name}_{n}')}")
    joins = " ".join(f"LEFT JOIN {table}_d_{m.name}_{n} USING (grp, day)" for m in distinct for n in windows)

    def as_double(raw: str, m: C.GroupMetric) -> str:
        """A window's integer sum as a DOUBLE in the metric's own unit."""
        return d.cast(raw, "DOUBLE") if m.value is None else f"({d.cast(raw, 'DOUBLE')} / {d.double(C.FIXED_POINT)})"

    def value(f: C.GroupFeature) -> str:
        num = f"COALESCE({q(f'{f.num}_{f.days}')}, 0)"
        if f.den is None:
            if f.dtype == "int64" and f.numerator.value is None:
                return num
            return f"{as_double(num, f.numerator)} * {d.double(f.scale)}"
        den = f"COALESCE({q(f'{f.den}_{f.days}')}, 0)"
        den_value = den if f.denominator.value is None else as_double(den, f.denominator)
        return f"CASE WHEN {den} > 0 THEN {as_double(num, f.numerator)} * {d.double(f.scale)} / {den_value} END"

    # The grid starts on the first day so its data enters the windows; snapshots start a day later.
    base = f"""SELECT w.grp, w.day, {', '.join(c if '.' in c else 'w.' + c for c in win_names)}
               FROM {table}_win w {joins} WHERE w.day > {first_day}"""
    cols = ", ".join(f"{value(f)} AS {q(col)}" for col, f in features)
    stmts.append((table, f"""SELECT grp AS {q(key)}, {d.timestamp_us(f'day * {DAY_US}')} AS event_timestamp, {cols}
        FROM ({base}) snapshots ORDER BY 1, 2"""))
    return stmts


def marketplace_statement() -> Statement:
    """The marketplace view: the subject view pivoted to one wide row per day."""
    cols = ", ".join(f"MAX(CASE WHEN subject = {_string(s)} THEN {q(C.SUBJECT_FEATURE_PREFIX + f.name)} END) AS {q(col)}"
                     for col, f, s in C.subject_columns())
    return (C.MARKETPLACE_VIEW, f"""SELECT {_string(C.MARKETPLACE_KEY)} AS marketplace_id, event_timestamp, {cols}
        FROM {C.SUBJECT_VIEW} GROUP BY event_timestamp ORDER BY event_timestamp""")


def group_tables(first_day: int, until_day: int, d: Dialect) -> list[Statement]:
    """Every group table's statements: tutor, subject, then the marketplace pivot."""
    steps = group_statements(C.TUTOR_VIEW, "tutor_id", C.TUTOR_METRICS, [(f.name, f) for f in C.TUTOR_FEATURES],
                             first_day, until_day, d)
    steps += group_statements(C.SUBJECT_VIEW, "subject", C.SUBJECT_METRICS, C.subject_view_columns(),
                              first_day, until_day, d, all_subjects=True)
    steps.append(marketplace_statement())
    return steps
