"""Rollout target selectors: the Kubernetes set-based forms, a strict parser with clear
errors, and a stored form the engine evaluates purely."""

from __future__ import annotations

import json

import pytest

from controller.rollout import (
    InvalidSelector,
    Requirement,
    RolloutSpec,
    matches,
    parse_selector,
    selector_from_data,
    selector_text,
)
from edgefleet.errors import InvalidInput

DEVICES = {
    "a": {"site": "lab", "tier": "prod"},
    "b": {"site": "edge", "tier": "canary", "retired": "yes"},
    "c": {"site": "store"},
    "d": {},
}


def chosen(text: str) -> set[str]:
    sel = parse_selector(text)
    return {name for name, labels in DEVICES.items() if matches(sel, labels)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {"a", "b", "c", "d"}),
        ("site=lab", {"a"}),
        ("site==lab", {"a"}),
        ("site!=lab", {"b", "c", "d"}),  # a device without the label is not "lab"
        ("site in (lab,edge)", {"a", "b"}),
        ("site in (lab, edge )", {"a", "b"}),
        ("site notin (lab,edge)", {"c", "d"}),
        ("tier", {"a", "b"}),
        ("!tier", {"c", "d"}),
        ("site in (lab,edge),!retired", {"a"}),
        ("site, tier!=prod, !retired", {"c"}),
        ("k8s.io/zone-1_x=a.b-c", set()),
    ],
)
def test_each_form_selects(text: str, expected: set[str]) -> None:
    assert chosen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("site in lab", "expected '(' after site in, not 'lab' at 9"),
        ("site in (lab,", "expected a value after ',' at the end"),
        ("site in (lab edge)", "expected ',' or ')', not 'edge'"),
        ("site in ()", "expected a value, not ')'"),
        ("site=", "expected a value after site= at the end"),
        ("site=lab,", "expected a requirement after ','"),
        ("site=lab tier=prod", "expected ',' between requirements, not 'tier'"),
        ("!", "expected a label key after '!' at the end"),
        ("=lab", "expected a label key, not '='"),
        ("site=lab;rm", "unexpected ';' at position 9"),
        ("site > 3", "unexpected '>'"),
    ],
)
def test_bad_selectors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(InvalidSelector) as err:
        parse_selector(text)
    assert isinstance(err.value, InvalidInput)
    assert message in str(err.value), str(err.value)


def test_the_stored_form_round_trips_and_old_rollouts_still_load() -> None:
    text = "site in (lab,edge),tier!=canary,!retired,zone"
    spec = RolloutSpec("r1", "cam", 2, selector=parse_selector(text))
    stored = json.loads(json.dumps(spec.to_dict()))
    assert stored["selector"][0] == {"key": "site", "op": "in", "values": ["lab", "edge"]}
    again = RolloutSpec.from_dict(stored)
    assert again == spec and selector_text(again.selector) == text
    # Rollouts stored before set-based selectors: a {key: value} mapping of equalities.
    legacy = RolloutSpec.from_dict({**stored, "selector": {"tier": "prod", "site": "lab"}})
    assert legacy.selector == (
        Requirement("site", "=", ("lab",)),
        Requirement("tier", "=", ("prod",)),
    )
    assert selector_from_data("site=lab") == (Requirement("site", "=", ("lab",)),)
    with pytest.raises(InvalidSelector):
        Requirement("site", "in", ())
    with pytest.raises(InvalidSelector):
        selector_from_data([{"key": "site"}])
