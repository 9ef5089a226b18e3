"""The README's benchmark table, regenerated from bench/results.json.

    python -m bench.readme           # rewrite the table between the README's markers
    python -m bench.readme --print   # print it instead

The table sits between `<!-- bench-table:start -->` and `<!-- bench-table:end -->` in README.md;
nothing else in the README is touched.
"""

from __future__ import annotations

import json
import sys

from bench.common import REPO

RESULTS = REPO / "bench" / "results.json"
README = REPO / "README.md"
START = "<!-- bench-table:start -->"
END = "<!-- bench-table:end -->"


def goal_text(goal: str) -> str:
    if goal == "info":
        return "information"
    if goal in (">=", "<=", "=="):
        return f"{dict(zip(('>=', '<=', '=='), '≥≤=', strict=True))[goal]} limit"
    sign = "≥" if goal.startswith(">=") else "≤"
    share = float(goal[2:-1])
    if share > 100:
        return f"{sign} {share / 100:g} × limit"
    return f"{sign} {share:g} % of limit"


def number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def met_text(met: bool | None) -> str:
    return "–" if met is None else ("yes" if met else "**no**")


def markdown(figures: list[dict]) -> str:
    """The figures as a Markdown table: side-by-side ratios and absolute figures marked."""
    lines = [
        "| figure | value | limit | ratio | goal | met | basis |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        basis = f.get("basis") or ("side by side" if f["goal"].endswith("%") else "absolute")
        lines.append(
            f"| {f['name']} | {number(f['value'])} {f['unit']} | {number(f['limit'])} | "
            f"{number(f['ratio'], 2)} | {goal_text(f['goal'])} | {met_text(f['met'])} | "
            f"{basis} |"
        )
    return "\n".join(lines)


def rewrite(readme: str, table: str) -> str:
    """`readme` with the text between the markers replaced by `table`."""
    head, start, rest = readme.partition(START)
    _old, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md lacks the markers {START} … {END}")
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str]) -> int:
    table = markdown(json.loads(RESULTS.read_text()))
    if argv == ["--print"]:
        print(table)
        return 0
    README.write_text(rewrite(README.read_text(), table))
    print(f"README.md: table of {table.count(chr(10)) - 1} figures from {RESULTS.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
