"""The one strict JSON decoder for what Coasty sends: no NaN or infinity reaches a store, an
oversize number is clamped, and each such value is recorded where it was."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.coasty import CoastyClient, RetryPolicy
from runs.coasty.strict_json import INT_MAX, INT_MIN, PORTAL_KEY, Decoded, loads, loads_object


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_are_refused_and_recorded(constant):
    # when a result carries a number no JSON store takes back
    decoded = loads(f'{{"result": {{"score": {constant}, "ok": 1.5}}, "list": [{constant}]}}')

    # then the values are null, the rest is untouched, and each place is recorded
    assert decoded.value == {"result": {"score": None, "ok": 1.5}, "list": [None]}
    assert [entry.split(":")[0] for entry in decoded.refused] == ["result.score", "list[0]"]
    json.dumps(decoded.value, allow_nan=False)  # storable anywhere


def test_oversize_integers_are_clamped_and_recorded_even_past_python_digit_limit():
    huge = "9" * 5000
    decoded = loads(f'{{"steps_completed": {huge}, "seq": -{huge}, "ok": {INT_MAX}}}')
    assert decoded.value == {"steps_completed": INT_MAX, "seq": INT_MIN, "ok": INT_MAX}
    assert len(decoded.refused) == 2
    assert "clamped" in decoded.refused[0]


def test_objects_carry_their_record_and_bad_json_is_a_value_error():
    assert loads_object('{"a": NaN}') == {"a": None, PORTAL_KEY: {"refused": ["a: NaN refused"]}}
    assert loads_object('{"a": 1}') == {"a": 1}
    for bad in ("[1]", "{", "nan", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(ValueError):
            loads_object(bad)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_whatever_python_json_would_write_decodes_to_storable_json(value):
    decoded = loads(json.dumps(value))  # NaN and infinities included, as Python writes them
    json.dumps(decoded.value, allow_nan=False)


def test_the_client_refuses_nan_in_a_run_record_and_notes_it():
    body = b'{"id": "run_1", "status": "succeeded", "steps_completed": 3, "result": {"x": NaN}}'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    client = CoastyClient(
        "http://coasty.test",
        "sk-coasty-test-k",
        transport=httpx.MockTransport(answer),
        retry=RetryPolicy(max_attempts=1),
    )
    record = client.get_run("run_1")
    assert record["result"] == {"x": None}
    assert record[PORTAL_KEY] == {"refused": ["result.x: NaN refused"]}


def test_lone_surrogates_become_replacement_characters_and_pairs_stay():
    decoded = loads(b'{"a\\ud800": ["\\udfff x", "\\ud83d\\ude00"]}')
    assert decoded.value == {"a\ufffd": ["\ufffd x", "\U0001f600"]}
    json.dumps(decoded.value).encode("utf-8")


def test_what_one_document_refused_is_not_carried_into_the_next():
    # the decoder is made once and counts refusals per call
    assert loads('{"a": NaN}').refused == ["a: NaN refused"]
    assert loads('{"a": 1.5}').refused == []
    # nor from a document that failed half way
    with pytest.raises(ValueError):
        loads('{"a": NaN, "b": ')
    assert loads('{"b": [1, 2.5]}') == Decoded({"b": [1, 2.5]})


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32"])
def test_every_json_encoding_is_decoded_and_cleaned_alike(encoding):
    # bytes in any encoding JSON allows: told apart by their first bytes, as json.loads does,
    # and cleaned of lone surrogates and refused numbers whatever the encoding
    text = '{"a\\ud800": "x", "n": NaN, "ok": [1, 2.5]}'
    decoded = loads(text.encode(encoding))
    assert decoded.value == {"a\ufffd": "x", "n": None, "ok": [1, 2.5]}
    assert decoded.refused == ["n: NaN refused"]


def test_a_byte_order_mark_in_text_and_a_non_text_argument_are_refused():
    with pytest.raises(ValueError):
        loads('\ufeff{"a": 1}')
    with pytest.raises(TypeError):
        loads(123)  # type: ignore[arg-type]


def test_a_raw_surrogate_in_utf8_bytes_is_replaced_too():
    # bytes ED A0 80 are a surrogate encoded as UTF-8: invalid, yet let through as json.loads
    # lets them through; no UTF-8 page or jsonb can hold the result
    decoded = loads(b'{"a": "x\xed\xa0\x80y", "b": "caf\xc3\xa9"}')
    assert decoded.value == {"a": "x\ufffdy", "b": "caf\u00e9"}
    json.dumps(decoded.value, ensure_ascii=False).encode("utf-8")
