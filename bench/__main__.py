"""`make bench`: every benchmark, each in its own process, then one table and results.json.

    python -m bench [webhook ingest ledger pages launch schedules budget notify]
    python -m bench --markdown      # bench/results.json as a Markdown table
    python -m bench --readme        # that table written into README.md (python -m bench.readme)

Each benchmark starts from a fresh `portal_bench` database (the pages dataset lives in
`portal_bench_pages` and is kept). Figures are compared with their limits measured in the same
run (see bench/common.py Figure).
"""

import json
import subprocess
import sys
import time

from bench.common import BENCH_DB, PY, REPO, VAR, django_env, recreate_database
from bench.readme import RESULTS, markdown, number
from bench.readme import main as readme_main

BENCHMARKS = ("webhook", "ingest", "ledger", "pages", "launch", "schedules", "budget", "notify")
# Seconds each may take; pages builds its two datasets the first time (the 1M-run one takes
# minutes: bulk SQL, then the indexes), later runs reuse them.
TIMEOUTS = {"pages": 1800}
KEYS = ("name", "value", "unit", "limit", "ratio", "goal", "met", "basis", "note")


def run_one(name: str) -> tuple[list[dict], str]:
    recreate_database(BENCH_DB)
    log = VAR / f"bench-{name}.log"
    started = time.perf_counter()
    with open(log, "w") as err:
        done = subprocess.run(
            [PY, "-m", f"bench.{name}"],
            cwd=REPO,
            env=django_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=TIMEOUTS.get(name, 300),
        )
    seconds = time.perf_counter() - started
    figures = []
    for line in done.stdout.splitlines():
        if line.startswith("BENCH-FIGURES "):
            figures += json.loads(line.removeprefix("BENCH-FIGURES "))
    status = f"{name}: {seconds:.0f} s" + (
        f", exit {done.returncode} (see {log})" if done.returncode else ""
    )
    return figures, status


def table(figures: list[dict]) -> str:
    rows = [("figure", "value", "limit", "ratio", "goal", "met")]
    for f in figures:
        rows.append(
            (
                f["name"],
                f"{f['value']:,.1f} {f['unit']}",
                number(f["limit"]),
                number(f["ratio"], 2),
                f["goal"],
                "-" if f["met"] is None else ("yes" if f["met"] else "NO"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def merged(figures: list[dict], chosen: list[str]) -> list[dict]:
    """The new figures in place of the chosen benchmarks' old ones; the others' kept as they were
    (a figure's benchmark is its name up to the colon), in the order of BENCHMARKS."""
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    kept = [f for f in old if f["name"].split(":")[0] not in chosen]
    rows = [{k: f.get(k) for k in KEYS} for f in kept + figures]
    order = {name: n for n, name in enumerate(BENCHMARKS)}
    return sorted(rows, key=lambda f: order.get(f["name"].split(":")[0], len(order)))


def verdict(figure: dict) -> str:
    if figure["met"] is None:
        return "information"
    return "met" if figure["met"] else "NOT met"


def main(argv: list[str]) -> int:
    if argv == ["--markdown"]:
        print(markdown(json.loads(RESULTS.read_text())))
        return 0
    if argv == ["--readme"]:
        return readme_main([])
    chosen = argv or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    VAR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # DEBUG is off in the benchmarks (production settings): the pages need collected statics.
    subprocess.run(
        [PY, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=REPO,
        env=django_env(),
        check=True,
    )
    figures, statuses = [], []
    for name in chosen:
        print(f"running {name} ...", flush=True)
        found, status = run_one(name)
        figures += found
        statuses.append(status)
        for figure in found:
            print(
                f"  {figure['name']}: {figure['value']:,.1f} {figure['unit']} (limit {number(figure['limit'])}, {verdict(figure)}) {figure.get('note', '')}",
                flush=True,
            )
    total = time.perf_counter() - started
    RESULTS.write_text(json.dumps(merged(figures, chosen), indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(figures))
    print()
    print("; ".join(statuses) + f"; total {total:.0f} s. Written to {RESULTS.relative_to(REPO)}.")
    failed = any("exit" in status for status in statuses)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
