"""`make bench`: the portal's performance figures, each measured beside its limit in one run.

`python -m bench` runs every benchmark (see bench/run.py) and writes bench/results.json.
"""
