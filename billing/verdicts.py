"""Reconciliation rules: does what the ledger charged for a run agree with what Coasty reported?

Pure functions and plain data, no database: `compare` takes the figures and returns the verdict
in numbers and words. `billing.services.hold_settle` and `reconcile_hold` record its result.

Fresh upstream figures come through dependency inversion, because billing never imports runs:
the setting `BILLING_UPSTREAM_REPORTER` names (as a dotted path) a function
`report(hold: billing.models.Hold) -> UpstreamReport | None` that the runs app provides, for
example by asking `GET /v1/runs/{id}` for `hold.run_id`. With no reporter configured (or when it
returns None for a hold), reconciliation re-checks the figures recorded on the hold when it was
settled.
"""

from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from portal.core.money import format_cents as _money


@dataclass(frozen=True)
class UpstreamReport:
    """What Coasty says about a finished run.

    steps_completed: completed agent steps; credits_charged: credits (= cents) Coasty billed;
    test_mode: True when the run used an `sk-coasty-test-*` key, which bills nothing;
    step_price_cents: the price per step, when the reporter knows it (else the hold's own).
    """

    steps_completed: int
    credits_charged: int
    test_mode: bool
    step_price_cents: int | None = None


@dataclass(frozen=True)
class Verdict:
    matched: bool
    expected_cents: int
    difference_cents: int
    explanation: str


def compare(
    *,
    ledger_captured_cents: int,
    ledger_step_count: int,
    steps_completed: int,
    step_price_cents: int,
    credits_charged: int,
    test_mode: bool,
    adjusted_cents: int = 0,
) -> Verdict:
    """The rules.

    Expected = steps_completed x step price. With a live key, what the team paid must equal the
    expected amount *and* what Coasty charged; the difference is measured against what Coasty
    charged (what the organisation actually paid). In test mode Coasty bills nothing, so only
    the ledger is compared with steps x price, and the words say so.

    What the team paid is the ledger's captures less `adjusted_cents`: what billing admins'
    adjustments for this run already gave back (negative when they took more), so a correction
    made once is never asked for again.
    """
    expected = steps_completed * step_price_cents
    paid = ledger_captured_cents - adjusted_cents
    steps_words = _steps(steps_completed)
    charged = f"The ledger charged the team {_money(ledger_captured_cents)} for {_steps(ledger_step_count)}"
    if adjusted_cents > 0:
        charged += (
            f"; adjustments for this run already gave back {_money(adjusted_cents)}, "
            f"so the team paid {_money(paid)}"
        )
    elif adjusted_cents < 0:
        charged += (
            f"; adjustments for this run already took {_money(-adjusted_cents)} more, "
            f"so the team paid {_money(paid)}"
        )
    expected_words = f"{steps_words} at {_money(step_price_cents)} is {_money(expected)}"
    sentences: list[str] = []
    if test_mode:
        difference = paid - expected
        matched = difference == 0
        sentences.append(
            "Coasty ran this with a test key and bills nothing for it, so only the ledger is "
            f"compared with steps x price: Coasty reported {expected_words}."
        )
        sentences.append(charged + ".")
        if matched:
            sentences.append("They match.")
        else:
            sentences.append(_direction(difference, "than the steps cost"))
    else:
        difference = paid - credits_charged
        matched = paid == expected == credits_charged
        sentences.append(
            f"Coasty reported {steps_words} and charged {_money(credits_charged)}; "
            f"{expected_words}."
        )
        sentences.append(charged + ".")
        if matched:
            sentences.append("All three agree.")
        else:
            if credits_charged != expected:
                sentences.append(
                    f"Coasty's charge differs from steps x price by "
                    f"{_money(abs(credits_charged - expected))}: check the step price."
                )
            if paid != expected:
                sentences.append(_ledger_vs_steps(ledger_step_count, steps_completed))
            sentences.append(_direction(difference, "than Coasty billed"))
    return Verdict(
        matched=matched,
        expected_cents=expected,
        difference_cents=difference,
        explanation=" ".join(s for s in sentences if s),
    )


def configured_reporter():
    path = getattr(settings, "BILLING_UPSTREAM_REPORTER", None)
    return import_string(path) if path else None


def configured_batch_reporter():
    """The configured reporter's batch form, when it offers one: `reporter.many(holds) ->
    {hold pk: UpstreamReport | None | Exception}`, Coasty's figures for a batch, asked at once."""
    reporter = configured_reporter()
    return getattr(reporter, "many", None) if reporter is not None else None


def _steps(n: int) -> str:
    return f"{n} step{'s' if n != 1 else ''}"


def _direction(difference: int, against: str) -> str:
    if difference > 0:
        return f"The team was charged {_money(difference)} more {against}."
    if difference < 0:
        return f"The team was charged {_money(-difference)} less {against}."
    return ""


def _ledger_vs_steps(ledger_steps: int, steps: int) -> str:
    if ledger_steps > steps:
        return (
            f"The ledger has {ledger_steps - steps} step charge(s) more than Coasty's step count."
        )
    if ledger_steps < steps:
        return (
            f"{steps - ledger_steps} completed step(s) were not charged "
            "(the hold ran out, or the step price changed)."
        )
    return "The step count agrees but the amounts per step differ."
