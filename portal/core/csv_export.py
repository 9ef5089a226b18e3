"""CSV downloads, streamed a row at a time, that a spreadsheet opens as data, never as formulas.

The ledger and the runs list export through here, so both are safe the same way.
"""

import csv
from collections.abc import Iterable, Iterator
from typing import Any


def spreadsheet_safe(text: str) -> str:
    """Text a person typed (a reference, a task) must not run as a formula when the CSV is
    opened: a leading =, +, -, @, tab or carriage return makes a spreadsheet evaluate the cell,
    so such a cell is led by a quote."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    """A file that hands back what is written, so csv.writer yields lines to stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The header and each row as CSV lines, produced as the rows are read."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)
