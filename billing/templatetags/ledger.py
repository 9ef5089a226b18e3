"""The wallet's grouped ledger: a run's row, built in Python. `{% load ledger %}`.

The wallet page shows 50 groups a page, nearly all of them runs. As a template include, a run's
row cost ~0.2 ms of variable lookups and filters, 10-14 ms of a ~45 ms page (`make bench`,
"pages"); built here with `format_html`, as Django's admin builds the rows of its change lists,
it costs a small part of that. Every value is escaped as the template escaped it. The other
entries (top-ups, adjustments, holds without a run) are rarer and keep their template
(`billing/includes/ledger_group.html`), which words an amount as the other ledgers do.
"""

from django import template
from django.utils.formats import localize
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from billing.ledger_groups import LedgerGroup
from portal.core.reversing import reverse_with_id
from portal.core.templatetags.money import cents

register = template.Library()

_RUN_ROW = (
    '<tr class="ledger-run">'
    '<td class="nowrap" data-label="When" title="{}">{}</td>'
    '<td class="fill" data-label="What"><div class="truncate">Run: {}</div>'
    '<details class="run-steps" hx-get="{}" hx-trigger="toggle once" '
    'hx-target="find .run-entries" hx-swap="innerHTML">'
    '<summary class="small">{} {}{}</summary>'
    '<div class="run-entries"><a href="{}">Show this run\'s entries</a></div>'
    "</details></td>"
    '<td class="small nowrap" data-label="By">{}</td>'
    '<td class="nowrap" data-label="Status">{}</td>'
    '<td class="num" data-label="Steps">{}</td>'
    '<td class="num" data-label="Held">{}</td>'
    '<td class="num" data-label="Charged"><span class="amount neutral">{}</span>'
    '<span class="visually-hidden"> charged</span></td>'
    "</tr>\n"
)
# A constant of ours, no value in it.
_UNLISTED = mark_safe('<span class="muted">a run no longer listed</span>')


def _short(text: str, length: int = 160) -> str:
    """`truncatechars:160`, without its walk over every character when the text is shorter
    than that (which it cannot then shorten; most tasks are)."""
    return text if len(text) <= length else Truncator(text).chars(length)


@register.simple_tag
def ledger_run_row(group: LedgerGroup, team, filter_query: str = "") -> SafeString:
    """One run's row of the grouped ledger: when, its task (a link to the run), its entries
    behind a <details> that loads them (htmx) or links to their page, who launched it, its
    status, steps, hold and what it was charged."""
    run = group.run
    if group.run_id is None:  # the template gives only a run's group this row
        raise ValueError("ledger_run_row is a run's row; this group has no run")
    entries_url = reverse_with_id("wallet_run_entries", group.run_id, team.slug)
    if filter_query:
        entries_url = f"{entries_url}?{filter_query}"
    what: str = _UNLISTED
    by, status = "—", ""
    if run is not None:
        what = format_html('<a href="{}" title="{}">{}</a>', run.url, run.task, _short(run.task))
        by = run.launched_by
        status = format_html('<span class="badge {}">{}</span>', run.status, run.status_label)
    if group.still_held_cents:
        money = f" · {cents(group.still_held_cents)} still held"
    elif group.released_cents:
        money = f" · {cents(group.released_cents)} released"
    else:
        money = ""
    held = (
        format_html('<span class="amount neutral">{}</span>', cents(group.held_cents))
        if group.held_cents
        else ""
    )
    return format_html(
        _RUN_ROW,
        group.when_title,
        group.when_text,
        what,
        entries_url,
        localize(group.entries),
        "entry" if group.entries == 1 else "entries",
        money,
        entries_url,
        by,
        status,
        localize(group.steps),
        held,
        cents(group.net_cents),
    )
