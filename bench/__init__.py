"""`make bench`: the portal's performance figures, each measured beside its limit in one run.

`python -m bench [names]` runs the benchmarks (bench/__main__.py lists them), each in its own
process, and writes bench/results.json; `python -m bench.readme` makes the README table from it.
"""
