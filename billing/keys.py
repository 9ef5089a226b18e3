"""Every ledger key format, in one place.

Each transfer carries a unique idempotency key (a UniqueConstraint on Transfer): a retried or
duplicated movement inserts the same key and is refused, so money moves once. The formats below
are what makes two calls "the same movement"; nothing else in the portal builds them.

- `topup:<key>`            a billing admin's top-up; <key> from the form or the API's
                           Idempotency-Key (API keys are prefixed `api:`).
- `adjust:<key>`           a billing admin's correction; a discrepancy's adjustment scopes its
                           form key as `reconciliation:<id>:<key>`.
- `hold:<reference>`       placing a hold; a run's hold reference is `run:<run uuid>`.
- `capture:<reference>:<step>`  one completed step charged from a hold, once per step number.
- `release:<reference>`    what is left of a hold, returned when it closes.
"""

from uuid import UUID


def run_hold_reference(run_id: UUID | str) -> str:
    """The reference of a run's hold: one hold per run."""
    return f"run:{run_id}"


def top_up_key(key: str) -> str:
    return f"topup:{key}"


def adjust_key(key: str) -> str:
    return f"adjust:{key}"


def reconciliation_adjust_key(reconciliation_id: int, key: str) -> str:
    """The key a discrepancy's adjustment is made under: its form's key, scoped to it."""
    return f"reconciliation:{reconciliation_id}:{key}"


def hold_key(reference: str) -> str:
    return f"hold:{reference}"


def capture_key(reference: str, step: int) -> str:
    return f"capture:{reference}:{step}"


def release_key(reference: str) -> str:
    return f"release:{reference}"
