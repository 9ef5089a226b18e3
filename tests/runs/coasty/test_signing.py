"""Webhook signatures: the design's test vectors and every way a delivery is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.coasty import (
    WebhookSignatureError,
    WebhookSignatureMalformed,
    WebhookSignatureMismatch,
    WebhookSignatureStale,
    sign,
    signature_header,
    verify,
)

SECRET = "whsec_test_secret_123"
T = 1750000000
BODY = b'{"event":"run.succeeded","run_id":"run_123","status":"succeeded"}'
HEX = "5f70978eab52dbf5838da76e5eb6c6c465560ce8e746ed8e6113c159d8bbb2d4"

OTHER_SECRET = "whsec_other_secret_456"
OTHER_T = 1750000300
OTHER_BODY = b'{"event":"run.awaiting_human","run_id":"run_456","reason":"captcha"}'
OTHER_HEX = "844504f42b7498094a83cedd7e050fc2f7fa32593b0814cc514c4be52a932e63"


# --- the published test vectors (docs/architecture.md, "Webhook signing") ---------------


def test_vector_one():
    assert sign(SECRET, T, BODY) == HEX
    assert signature_header(SECRET, T, BODY) == f"t={T},v1={HEX}"
    verify(f"t={T},v1={HEX}", BODY, [SECRET], now=T)


def test_vector_two():
    assert sign(OTHER_SECRET, OTHER_T, OTHER_BODY) == OTHER_HEX
    assert signature_header(OTHER_SECRET, OTHER_T, OTHER_BODY) == f"t={OTHER_T},v1={OTHER_HEX}"
    verify(f"t={OTHER_T},v1={OTHER_HEX}", OTHER_BODY, [OTHER_SECRET], now=OTHER_T)


def test_text_and_bytes_sign_alike():
    assert sign(SECRET.encode(), T, BODY.decode()) == HEX


# --- accepted ------------------------------------------------------------------------------------


def test_any_of_several_secrets_passes_during_a_rotation():
    # given deliveries signed with the old secret and with the new one
    for secret in (SECRET, OTHER_SECRET):
        header = signature_header(secret, T, BODY)

        # when / then both verify against [new, old]
        verify(header, BODY, [OTHER_SECRET, SECRET], now=T)


def test_a_single_secret_may_be_passed_as_a_string():
    verify(f"t={T},v1={HEX}", BODY, SECRET, now=T)


def test_any_of_several_v1_entries_may_match_and_unknown_schemes_are_ignored():
    wrong = "0" * 64
    verify(f"t={T},v1={wrong},v1={HEX}", BODY, [SECRET], now=T)
    verify(f"v1={HEX}, t={T}, v0=legacy", BODY, [SECRET], now=T)
    verify(f"t={T},v1={HEX.upper()}", BODY, [SECRET], now=T)


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_timestamps_within_tolerance_pass(skew):
    verify(f"t={T},v1={HEX}", BODY, [SECRET], now=T + skew)


# --- refused -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        HEX,
        f"v1={HEX}",  # no timestamp
        f"t={T}",  # no signature
        f"t=,v1={HEX}",
        f"t=abc,v1={HEX}",
        f"t=-5,v1={HEX}",
        f"t=1.5,v1={HEX}",
        f"t={T},t={T},v1={HEX}",  # two timestamps
        f"t={T},v1={HEX[:-1]}",  # 63 hex digits
        f"t={T},v1={HEX}0",
        f"t={T},v1={'z' * 64}",
        f"t={T};v1={HEX}",
        f"t={T},v1",
    ],
)
def test_malformed_headers_are_refused(header):
    with pytest.raises(WebhookSignatureMalformed):
        verify(header, BODY, [SECRET], now=T)


def test_a_signature_from_another_secret_is_refused():
    header = signature_header(OTHER_SECRET, T, BODY)
    with pytest.raises(WebhookSignatureMismatch):
        verify(header, BODY, [SECRET], now=T)


def test_a_changed_timestamp_is_refused():
    with pytest.raises(WebhookSignatureMismatch):
        verify(f"t={T + 1},v1={HEX}", BODY, [SECRET], now=T)


@given(st.data())
def test_any_changed_byte_is_refused(data):
    # given one byte of the body changed to another value
    index = data.draw(st.integers(min_value=0, max_value=len(BODY) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != BODY[index]))
    tampered = BODY[:index] + bytes([value]) + BODY[index + 1 :]

    # when / then
    with pytest.raises(WebhookSignatureMismatch):
        verify(f"t={T},v1={HEX}", tampered, [SECRET], now=T)


def test_an_added_or_dropped_byte_is_refused():
    for body in (BODY + b" ", BODY[:-1], b" " + BODY, b""):
        with pytest.raises(WebhookSignatureMismatch):
            verify(f"t={T},v1={HEX}", body, [SECRET], now=T)


@pytest.mark.parametrize("skew", [-301, 301, -86400, 86400])
def test_stale_timestamps_are_refused_in_both_directions(skew):
    with pytest.raises(WebhookSignatureStale) as raised:
        verify(f"t={T},v1={HEX}", BODY, [SECRET], now=T + skew)
    assert ("old" in str(raised.value)) == (skew > 0)


def test_tolerance_can_be_narrowed():
    with pytest.raises(WebhookSignatureStale):
        verify(f"t={T},v1={HEX}", BODY, [SECRET], now=T + 61, tolerance=60)


def test_all_refusals_share_one_base_class():
    for cls in (WebhookSignatureMalformed, WebhookSignatureMismatch, WebhookSignatureStale):
        assert issubclass(cls, WebhookSignatureError)


def test_misuse_is_a_programming_error_not_a_bad_delivery():
    with pytest.raises(ValueError):
        verify(f"t={T},v1={HEX}", BODY, [], now=T)
    with pytest.raises(TypeError):
        verify(f"t={T},v1={HEX}", BODY.decode(), [SECRET], now=T)  # type: ignore[arg-type]


@given(
    secret=st.text(min_size=1, max_size=40),
    t=st.integers(min_value=0, max_value=10**11),
    body=st.binary(max_size=300),
)
def test_what_is_signed_verifies(secret, t, body):
    verify(signature_header(secret, t, body), body, [secret], now=t)
