"""Run the benchmarks and write their results as one Markdown table.

Each ``bench/bench_*.py`` exposes ``run(quick: bool) -> list[dict]``; a row has
``benchmark``, ``metric``, ``value``, ``unit`` and optionally ``goal`` and
``ok`` (bool). ``python -m bench [NAME ...] [--quick]`` runs all or some.
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import platform
import sys
import traceback

HERE = pathlib.Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help="bench module names without the bench_ prefix (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the benchmarks themselves run")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.names:
        unknown = set(args.names) - {m.removeprefix("bench_") for m in modules}
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; expected some of {[m[6:] for m in modules]}")
        modules = [m for m in modules if m.removeprefix("bench_") in args.names]
    rows, failed = [], []
    for name in modules:
        print(f"== {name}", flush=True)
        try:
            rows += importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
    lines = [
        "# Benchmark results", "",
        f"Machine: {platform.machine()}, {platform.python_version()}, quick={args.quick}", "",
        "| benchmark | metric | value | unit | goal | met |", "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r.get("ok")
        lines.append(
            f"| {r['benchmark']} | {r['metric']} | {_fmt(r['value'])} | {r.get('unit', '')} | "
            f"{r.get('goal', '')} | {'' if ok is None else ('yes' if ok else 'NO')} |"
        )
    lines += [f"| {n} | FAILED | | | | NO |" for n in failed]
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


def _fmt(v) -> str:
    return f"{v:,.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


if __name__ == "__main__":
    sys.exit(main())
