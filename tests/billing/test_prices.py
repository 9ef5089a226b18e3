"""Step prices, from the settings' price table."""

import pytest

from billing.prices import UnknownCuaVersion, step_price_cents

pytestmark = pytest.mark.django_db


def test_step_prices_come_from_settings():
    # given the settings' price table / when prices are asked for / then they match Coasty's
    assert step_price_cents("v1") == 8
    assert [step_price_cents(v) for v in ("v3", "v4", "v5")] == [5, 5, 5]


def test_an_unknown_cua_version_has_no_price():
    # when a version that does not exist is priced
    with pytest.raises(UnknownCuaVersion) as caught:
        step_price_cents("v2")
    # then the error names the versions that do
    assert "v1, v3, v4, v5" in str(caught.value)
