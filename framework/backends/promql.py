"""Scope PromQL expressions to one model: every Loom series selector gets a ``model`` matcher."""

from __future__ import annotations

import json
import re

LOOM_PREFIX = "ray_loom_"

# One PromQL token at a time. Strings and comments are whole tokens, so nothing inside them is
# mistaken for a metric name or a brace; numbers and durations (5m, 1h30m, 0x1f, 1e3) are whole
# tokens, so their letters never start a name.
_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<comment>\#[^\n]*)
  | (?P<space>\s+)
  | (?P<number>\.?\d[\w.]*)
  | (?P<name>[A-Za-z_:][\w:]*)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)

# Keywords followed by a list of label names, not series: `sum by (le)`, `on (instance)`.
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def promql_string(value: str) -> str:
    """Quote ``value`` as a PromQL double-quoted string.

    Args:
        value: Any text, e.g. a model id.

    Returns:
        The literal, quotes included, with backslashes, quotes and control characters escaped.
    """
    # JSON's escapes are a subset of the Go escapes PromQL accepts; ensure_ascii=False keeps
    # non-ASCII text literal instead of \u surrogate pairs, which Go rejects.
    return json.dumps(value, ensure_ascii=False)


def scope_to_model(expr: str, model_id: str) -> str:
    """Add ``model="<model_id>"`` to every selector of a Loom series (names starting ``ray_loom_``).

    ``ray_loom_requests_total`` becomes ``ray_loom_requests_total{model="churn"}`` and
    ``ray_loom_requests_total{outcome="error"}`` becomes
    ``ray_loom_requests_total{outcome="error",model="churn"}``. Selectors that already have a
    ``model`` matcher (any operator) are left as written, and so are other series, strings,
    comments and label lists such as ``by (le)``. A selector named only by ``__name__="ray_loom_..."``
    or a quoted name (``{"ray_loom_..."}``) is scoped too.

    Args:
        expr: A PromQL expression, e.g. an alert rule's ``expr``.
        model_id: The model whose series the expression should see.

    Returns:
        The expression with the matcher added; text that is not PromQL syntax is copied unchanged.
    """
    matcher = f"model={promql_string(model_id)}"
    out: list[str] = []
    i = 0
    while i < len(expr):
        tok = _TOKEN.match(expr, i)
        kind, text = tok.lastgroup, tok.group()
        is_loom = kind == "name" and text.startswith(LOOM_PREFIX)
        nxt = _skip_spaces(expr, tok.end())
        end = tok.end()
        at, add = end, ""  # copy expr[i:end], with `add` inserted at `at`
        if kind == "name" and text.lower() in _LABEL_LISTS and expr.startswith("(", nxt):
            close = _find(expr, nxt + 1, ")")
            end = at = len(expr) if close < 0 else close + 1
        elif is_loom and not expr.startswith("{", nxt):
            add = "{" + matcher + "}"
        elif is_loom or text == "{":
            # Braces are always read whole, so label names inside are never taken for series.
            selector = _Selector.scan(expr, nxt if is_loom else tok.start())
            if selector is None:  # an unclosed brace: invalid PromQL, copied for Prometheus to report
                end = at = len(expr)
            else:
                end = at = selector.close + 1
                if not selector.has_model and (is_loom or selector.names_loom_series):
                    at, add = selector.insert_at, ("," if selector.needs_comma else "") + matcher
        out.append(expr[i:at] + add + expr[at:end])
        i = end
    return "".join(out)


class _Selector:
    """The label matchers between a selector's braces, and where a new matcher goes."""

    def __init__(self, close: int, matchers: list[list[str]], insert_at: int, needs_comma: bool) -> None:
        self.close = close  # index of the closing brace
        self.matchers = matchers  # each matcher's tokens, e.g. ['outcome', '=', '"error"']
        self.insert_at = insert_at  # just after the last matcher, so a trailing comment stays last
        self.needs_comma = needs_comma  # False when the braces are empty or end with a comma

    @classmethod
    def scan(cls, expr: str, open_at: int) -> _Selector | None:
        """Read the selector whose ``{`` is at ``open_at``; None when the brace never closes."""
        matchers: list[list[str]] = [[]]
        insert_at, last = open_at + 1, "{"
        i = open_at + 1
        while i < len(expr):
            tok = _TOKEN.match(expr, i)
            i = tok.end()
            if tok.lastgroup in ("space", "comment"):
                continue
            text = tok.group()
            if text == "}":
                return cls(tok.start(), [m for m in matchers if m], insert_at, last not in ("{", ","))
            if text == ",":
                matchers.append([])
            else:
                matchers[-1].append(text)
            insert_at, last = tok.end(), text
        return None

    @property
    def has_model(self) -> bool:
        """Whether a matcher on the ``model`` label is already there (``model="x"``, ``"model"!~"x"``)."""
        return any(_unquote(m[0]) == "model" for m in self.matchers if len(m) > 1)

    @property
    def names_loom_series(self) -> bool:
        """Whether a name-less selector picks a Loom series by ``__name__="..."`` or a quoted name."""
        for m in self.matchers:
            if len(m) == 1:  # Prometheus 3: {"metric_name", label="value"}
                name = m[0]
            elif _unquote(m[0]) == "__name__" and m[1:-1] == ["="]:  # not =~: a regex may match more
                name = m[-1]
            else:
                continue
            if name[0] in "\"'`" and _unquote(name).startswith(LOOM_PREFIX):
                return True
        return False


def _unquote(token: str) -> str:
    # Only compared with plain names (model, __name__, the prefix), so escapes need no decoding.
    return token[1:-1] if len(token) > 1 and token[0] in "\"'`" and token[-1] == token[0] else token


def _skip_spaces(expr: str, i: int) -> int:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return i


def _find(expr: str, i: int, char: str) -> int:
    """Index of the first ``char`` at or after ``i`` outside strings and comments; -1 if none."""
    while i < len(expr):
        tok = _TOKEN.match(expr, i)
        if tok.group() == char and tok.lastgroup == "other":
            return tok.start()
        i = tok.end()
    return -1
