"""The event presenter: the common field variants of each event type become words, anything
else shows as its JSON, and no row is ever blank."""

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.presenters import KNOWN_TYPES, present_event


def row(type_, data):
    return present_event(SimpleNamespace(seq=1, type=type_, data=data, created_at=None))


@pytest.mark.parametrize(
    "data",
    [{"step": 3, "steps_completed": 3}, {"step": 3}, {"steps_completed": 3}, {"step_number": 3}],
)
def test_both_step_event_shapes_say_which_step(data):
    assert row("step", data).text == "Step 3 completed"


@pytest.mark.parametrize(
    ("data", "title", "detail"),
    [
        ({"tool": "click", "input": {"x": 1}}, "click", '"x": 1'),
        ({"name": "click", "args": {"x": 1}}, "click", '"x": 1'),
        ({"action_type": "type_text", "params": {"text": "hi"}}, "type_text", '"text": "hi"'),
        ({"function": "scroll", "arguments": [1, 2]}, "scroll", "2"),
    ],
)
def test_tool_calls_name_their_tool_whatever_the_field_is_called(data, title, detail):
    shown = row("tool_call", data)
    assert shown.title == title
    assert detail in shown.detail


@pytest.mark.parametrize(
    ("data", "text", "badge"),
    [
        ({"tool": "click", "ok": True, "output": "clicked"}, "clicked", ""),
        ({"tool": "click", "ok": False, "output": "missed"}, "missed", "failed"),
        ({"name": "click", "success": False, "result": "missed"}, "missed", "failed"),
        ({"success": True, "result": {"rows": 3}}, '"rows": 3', ""),
        ({"success": True}, "Succeeded", ""),
    ],
)
def test_tool_results_show_their_outcome_whatever_the_fields_are_called(data, text, badge):
    shown = row("tool_result", data)
    assert text in shown.text
    assert shown.badge == badge


def test_errors_show_their_details():
    shown = row(
        "error",
        {"code": "VALIDATION_ERROR", "message": "Bad", "details": [{"field": "task", "msg": "x"}]},
    )
    assert (shown.badge, shown.text) == ("VALIDATION_ERROR", "Bad (task: x)")


def test_unknown_shapes_fall_back_to_json_and_portal_notes_are_shown():
    assert '"weird": 1' in row("step", {"weird": 1}).detail
    assert '"a": [' in row("telemetry", {"a": [1]}).detail
    shown = row("text", {"_portal": {"oversize_bytes": 900000, "limit_bytes": 65536}})
    assert shown.text == "(no data)"
    assert "900,000 bytes" in shown.notes[0]
    assert (
        "score: NaN refused"
        in row("text", {"_portal": {"refused": ["score: NaN refused"]}}).notes[0]
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "step",
        "steps_completed",
        "tool",
        "name",
        "args",
        "input",
        "ok",
        "success",
        "result",
        "output",
        "status",
        "text",
        "message",
        "code",
        "details",
        "error",
        "reason",
        "note",
        "credits_charged",
        "total_credits_charged",
        "_portal",
        "action_type",
        "params",
    ]
) | st.text(max_size=8)


@given(
    st.sampled_from([*sorted(KNOWN_TYPES), "other", ""]),
    st.dictionaries(field_names, json_values, max_size=6) | json_values,
)
def test_no_row_is_ever_blank(type_, data):
    shown = row(type_, data)
    assert (shown.title + shown.text + shown.detail + shown.badge).strip()


@pytest.mark.parametrize("type_", ["tool_result", "tool_call", "text", "error"])
def test_whitespace_is_not_content(type_):
    shown = row(type_, {"output": "  ", "text": "\n", "tool": " ", "message": " "})
    assert (shown.title + shown.text + shown.detail + shown.badge).strip()


def test_lone_surrogates_are_shown_as_replacement_characters():
    shown = row("tool_call", {"name": "a\ud800", "args": {"k\udfff": "v"}})
    (shown.title + shown.detail).encode("utf-8")  # no UnicodeEncodeError
    assert shown.title == "a\ufffd"
