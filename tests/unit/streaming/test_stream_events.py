"""Events off the bus: typed, checked, and refused with a reason that names the field."""

from __future__ import annotations

import pytest

from framework.streaming.events import BadEvent, EventParser


def _parser() -> EventParser:
    return EventParser({"customer_id": "string", "account": "int64"},
                       {"tenure": "int64", "charges": "float64", "plan": "string", "vip": "bool"},
                       "event_id", "event_time", 20)


def test_a_good_event_is_typed_by_the_recipe():
    ev = _parser().parse("1700000000000-0", {b"event_id": b"e1", b"customer_id": b"C1",
                                             b"account": b"42", b"tenure": b"7", b"charges": b"9.5",
                                             b"plan": b"gold", b"vip": b"true"})
    assert ev.event_id == "e1" and ev.entry_id == "1700000000000-0"
    assert ev.instance.entities == {"customer_id": "C1", "account": 42}
    assert ev.instance.features == {"tenure": 7, "charges": 9.5, "plan": "gold", "vip": True}
    assert ev.time_ms == 1700000000000.0  # no event_time: the moment the bus took it


def test_event_time_as_iso_or_epoch_ms():
    p = _parser()
    iso = p.parse("1-0", {"event_id": "e", "customer_id": "C", "account": "1",
                          "event_time": "2026-12-01T10:00:00Z"})
    assert iso.time_ms == pytest.approx(1796119200000.0)
    ms = p.parse("1-0", {"event_id": "e", "customer_id": "C", "account": "1", "event_time": "1234.5"})
    assert ms.time_ms == 1234.5


def test_an_empty_feature_value_leaves_the_stored_one():
    ev = _parser().parse("1-0", {"event_id": "e", "customer_id": "C", "account": "1", "tenure": ""})
    assert ev.instance.features == {"tenure": None}


@pytest.mark.parametrize("fields, fragment", [
    ({"customer_id": "C"}, "no 'event_id'"),
    ({"event_id": "x" * 21, "customer_id": "C"}, "at most 20"),
    ({"event_id": "e", "customer_id": "C", "colour": "red"}, "unknown field(s) colour"),
    ({"event_id": "e", "customer_id": "C", "account": "forty"}, "join key 'account'"),
    ({"event_id": "e", "customer_id": "C", "tenure": "7.5"}, "feature 'tenure' is '7.5'"),
    ({"event_id": "e", "customer_id": "C", "charges": "nan"}, "finite number"),
    ({"event_id": "e", "customer_id": "C", "vip": "maybe"}, "true or false"),
    ({"event_id": "e", "customer_id": "C", "event_time": "yesterday"}, "ISO 8601"),
    ({"event_id": "e"}, "nothing to score"),
    ({"event_id": "e", "plan": "g" * 2000}, "longer than 1024"),
    ({b"event_id": b"\xff\xfe", "customer_id": "C"}, "not UTF-8"),
])
def test_a_bad_event_names_the_field_and_the_rule(fields, fragment):
    with pytest.raises(BadEvent) as err:
        _parser().parse("1-0", fields)
    assert fragment in str(err.value)
