"""``make bench``: run every benchmark present and print one table.

    .venv/bin/python -m benchmarks [--only nightly_1m] [--only close_1m] [--runs 3]

A benchmark module takes part by exposing ``benchmark(*, runs: int) -> list[dict]`` returning
rows with the keys of :data:`COLUMNS` (``met`` true/false against its own targets); its own
``python -m benchmarks.<name>`` prints the details. Modules without it are listed as not run.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

COLUMNS = (
    ("benchmark", "benchmark", "{}"),
    ("runs", "runs", "{}"),
    ("wall_s", "median s", "{:.2f}"),
    ("rate", "throughput", "{}"),
    ("peak_rss_mb", "peak RSS MB", "{:,.0f}"),
    ("floor_s", "COPY floor s", "{:.2f}"),
    ("ratio", "× floor", "{:.2f}"),
    ("target", "target", "{}"),
    ("met", "met", "{}"),
)


def discovered() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(info.name for info in pkgutil.iter_modules([str(here)]) if not info.name.startswith("_"))


def table(rows: list[dict]) -> str:
    cells = [[title for _key, title, _fmt in COLUMNS]]
    for row in rows:
        cells.append([
            "–" if row.get(key) is None else (fmt.format(row[key]) if key != "met" else ("yes" if row[key] else "NO"))
            for key, _title, fmt in COLUMNS
        ])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only these benchmarks (module names)")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    rows: list[dict] = []
    for name in options.only or discovered():
        module = importlib.import_module(f"benchmarks.{name}")
        run = getattr(module, "benchmark", None)
        if run is None:
            rows.append({"benchmark": f"{name} (not run: no benchmark() function)"})
            continue
        print(f"== {name}", flush=True)
        rows.extend(run(runs=options.runs))
    print()
    print(table(rows))
    return 0 if all(row.get("met", True) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
