"""``make bench``: run every benchmark present and print one table.

    .venv/bin/python -m benchmarks [--only nightly_1m] [--only close_1m] [--runs 3]

A benchmark module takes part by exposing ``benchmark(*, runs: int) -> list[dict]`` returning
rows with the keys of :data:`COLUMNS` (``met`` true/false against its own targets, None for a
comparison row); its own ``python -m benchmarks.<name>`` prints the details. Modules without it
are listed as not run. Each module runs in a process of its own, so its memory figures are its
own: run one after another in one process, a benchmark's resident set would carry what the
earlier ones left in the heap.
"""

from __future__ import annotations

import argparse
import ast
import json
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Run in a fresh interpreter: import the module, call benchmark(runs=…), write its rows as JSON.
RUNNER = (
    "import importlib, json, sys; "
    "rows = importlib.import_module('benchmarks.' + sys.argv[1]).benchmark(runs=int(sys.argv[2])); "
    "open(sys.argv[3], 'w').write(json.dumps(rows, default=str))"
)

COLUMNS = (
    ("benchmark", "benchmark", "{}"),
    ("runs", "runs", "{}"),
    ("wall_s", "median s", None),
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


def seconds(value: float) -> str:
    """Two decimals, or enough significant digits for a figure in micro- or milliseconds."""
    return f"{value:.2f}" if value >= 0.01 else f"{value:.3g}"


def cell(key: str, fmt: str | None, value) -> str:
    if value is None:
        return "–"  # not measured, or (met) not a target: a comparison row
    if key == "met":
        return "yes" if value else "NO"
    return seconds(value) if fmt is None else fmt.format(value)


def table(rows: list[dict]) -> str:
    cells = [[title for _key, title, _fmt in COLUMNS]]
    for row in rows:
        cells.append([cell(key, fmt, row.get(key)) for key, _title, fmt in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [" | ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def has_benchmark(name: str) -> bool:
    """Whether the module defines ``benchmark()`` (read from its source, not imported here)."""
    tree = ast.parse((Path(__file__).resolve().parent / f"{name}.py").read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == "benchmark" for node in tree.body)


def run_module(name: str, runs: int) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        rows_file = Path(handle.name)
    try:
        subprocess.run([sys.executable, "-c", RUNNER, name, str(runs), str(rows_file)],  # noqa: S603
                       cwd=BASE_DIR, check=True)
        return json.loads(rows_file.read_text())
    finally:
        rows_file.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only these benchmarks (module names)")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    rows: list[dict] = []
    for name in options.only or discovered():
        if not has_benchmark(name):
            rows.append({"benchmark": f"{name} (not run: no benchmark() function)"})
            continue
        print(f"== {name}", flush=True)
        rows.extend(run_module(name, options.runs))
    print()
    print(table(rows))
    return 0 if all(row.get("met") is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
