"""What one completed agent step costs, by Coasty CUA version (settings.COASTY_STEP_PRICES_CENTS)."""

from django.conf import settings

from billing.errors import BillingError


class UnknownCuaVersion(BillingError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def step_price_cents(cua_version: str) -> int:
    prices: dict[str, int] = settings.COASTY_STEP_PRICES_CENTS
    try:
        return int(prices[cua_version])
    except KeyError:
        raise UnknownCuaVersion(
            f"No step price for CUA version {cua_version!r}; known: {', '.join(sorted(prices))}."
        ) from None
