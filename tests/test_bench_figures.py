"""bench/results.json rows and the README table made from them (bench/common.py, bench/readme.py)."""

import pytest

from bench.common import Figure
from bench.readme import END, START, markdown, rewrite


def test_information_rows_have_no_goal_and_no_verdict():
    row = Figure("webhook: bare view", 2900.0, "req/s", None, "info").as_dict()
    assert row["met"] is None
    assert row["ratio"] is None
    assert row["limit"] is None
    assert {"name", "value", "unit", "limit", "ratio", "goal", "met"} <= set(row)


def test_shares_and_multiples_of_a_side_by_side_limit():
    intake = Figure("webhook: intake", 700.0, "req/s", 1000.0, ">=70%")
    assert (intake.met, intake.ratio, intake.basis) == (True, 0.7, "side by side")
    assert not Figure("webhook: intake", 699.0, "req/s", 1000.0, ">=70%").met
    growth = Figure("pages: growth", 30.0, "ms", 20.0, "<=150%")
    assert (growth.met, growth.ratio) == (True, 1.5)
    assert not Figure("pages: growth", 30.2, "ms", 20.0, "<=150%").met
    assert Figure("pages: median", 20.0, "ms", 50, "<=").basis == "absolute"


def test_a_goal_without_a_limit_is_refused():
    with pytest.raises(ValueError):
        Figure("x", 1.0, "req/s", None, ">=")


def test_readme_table_replaces_only_the_text_between_the_markers():
    rows = [
        Figure("webhook: intake", 700.0, "req/s", 1000.0, ">=70%").as_dict(),
        Figure("webhook: bare view", 2900.0, "req/s", None, "info").as_dict(),
        Figure("pages: growth", 31.0, "ms", 20.0, "<=150%").as_dict(),
    ]
    table = markdown(rows)
    assert (
        "| webhook: intake | 700.0 req/s | 1,000.0 | 0.70 | ≥ 70 % of limit | yes | side by side |"
        in table
    )
    assert "| webhook: bare view | 2,900.0 req/s | – | – | information | – | absolute |" in table
    assert "≤ 1.5 × limit | **no** |" in table
    readme = f"# Title\n\nbefore\n{START}\nold table\n{END}\nafter\n"
    assert rewrite(readme, table) == f"# Title\n\nbefore\n{START}\n{table}\n{END}\nafter\n"
    with pytest.raises(ValueError):
        rewrite("no markers here", table)


def test_the_same_count_at_both_scales():
    assert Figure("pages: queries", 10, "queries", 10, "==").met
    assert not Figure("pages: queries", 11, "queries", 10, "==").met
