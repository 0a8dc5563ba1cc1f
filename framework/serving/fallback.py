"""The fallback chain's non-model levels: hand-written rules and the default answer."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

_OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
        "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Condition:
    """``feature OP value`` parsed from a rule's ``when`` entry such as ``'>= 4'``."""

    feature: str
    op: str
    value: Any

    def holds(self, row: dict[str, Any]) -> bool:
        """True when ``row`` has the feature and it satisfies the condition (numbers compare as numbers)."""
        have = row.get(self.feature)
        if have is None:
            return False
        try:
            if isinstance(self.value, float):
                return _OPS[self.op](float(have), self.value)
            return _OPS[self.op](str(have), self.value)
        except (TypeError, ValueError):
            return False


def parse_condition(feature: str, text: str) -> Condition:
    """Parse ``'>= 4'``, ``'== month_to_month'``; a bare value means ``==``.

    Raises:
        ValueError: the text has no value after its operator.
    """
    text = text.strip()
    for op in ("==", "!=", "<=", ">=", "<", ">"):
        if text.startswith(op):
            raw = text[len(op):].strip()
            break
    else:
        op, raw = "==", text
    if not raw:
        raise ValueError(f"serving.fallback rule on '{feature}': no value after '{op}' in {text!r}")
    try:
        return Condition(feature, op, float(raw))
    except ValueError:
        return Condition(feature, op, raw)


@dataclass(frozen=True)
class RuleAnswer:
    """One rule: all its conditions must hold."""

    conditions: tuple[Condition, ...]
    prediction: Any
    probability: float | None

    def matches(self, row: dict[str, Any]) -> bool:
        """True when every condition holds for ``row``."""
        return all(c.holds(row) for c in self.conditions)


def compile_rules(rules: list[Any]) -> list[RuleAnswer]:
    """The recipe's ``rules`` fallback level as matchers, in order."""
    return [RuleAnswer(tuple(parse_condition(f, t) for f, t in r.when.items()), r.prediction,
                       r.probability) for r in rules]


def first_match(rules: list[RuleAnswer], row: dict[str, Any]) -> RuleAnswer | None:
    """The first rule whose conditions all hold for ``row``, or None."""
    for rule in rules:
        if rule.matches(row):
            return rule
    return None
