"""Spend per day as a server-rendered SVG bar chart: geometry here, markup in the template.

No JavaScript and no chart library: the page stays fast, printable and readable without script,
and each bar carries a <title> so hovering (or a screen reader) gives the day and the amount.
"""

from dataclasses import dataclass
from datetime import date

from django.utils import timezone

from billing.spend import DaySpend
from portal.core.money import format_cents

WIDTH, HEIGHT = 600, 150
TOP, BOTTOM = 14, 20  # room for the peak label above, the date labels below


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    label: str


@dataclass(frozen=True)
class SpendChart:
    width: int
    height: int
    baseline: float
    bars: list[Bar]
    total_cents: int
    peak_cents: int
    first_day: date
    last_day: date
    description: str

    @property
    def empty(self) -> bool:
        return self.peak_cents == 0


def spend_chart(days: list[DaySpend]) -> SpendChart:
    peak = max((d.cents for d in days), default=0)
    total = sum(d.cents for d in days)
    slot = WIDTH / max(len(days), 1)
    plot = HEIGHT - TOP - BOTTOM
    bars = []
    for index, day in enumerate(days):
        bar_height = round(plot * day.cents / peak, 1) if peak else 0
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.15, 1),
                y=round(TOP + plot - bar_height, 1),
                width=round(slot * 0.7, 1),
                height=bar_height,
                day=day.day,
                label=f"{day.day:%a %-d %b}: {format_cents(day.cents)}",
            )
        )
    busiest = max(days, key=lambda d: d.cents) if days else None
    description = f"Spend per day over the last {len(days)} days: {format_cents(total)} in all" + (
        f", most on {busiest.day:%-d %B} ({format_cents(busiest.cents)})."
        if peak and busiest is not None
        else "."
    )
    return SpendChart(
        width=WIDTH,
        height=HEIGHT,
        baseline=TOP + plot,
        bars=bars,
        total_cents=total,
        peak_cents=peak,
        first_day=days[0].day if days else timezone.localdate(),
        last_day=days[-1].day if days else timezone.localdate(),
        description=description,
    )
