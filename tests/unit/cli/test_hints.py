"""Every `loom ...` command Loom suggests in a message parses with the real CLI and names its recipe.

The commands come from the source: each string literal and f-string under ``framework/`` (docstrings
left out: they are for developers), with f-string placeholders filled with sample values. A command
is a backticked ``loom ...`` or, outside backticks, ``loom <word>...`` up to the end of the line
(``&&`` separates two). Each is parsed with ``framework.cli.build_parser()``, never run.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from pathlib import Path
from typing import Iterator

import pytest

import framework
from framework.cli import build_parser

ROOT = Path(framework.__file__).parent
REPO = ROOT.parent

#: Commands that take ``recipe=NAME`` but work without it (they then cover the whole workspace).
RECIPE_OPTIONAL = {"status", "up", "down", "env"}

#: What f-string placeholders stand for in a printed hint; anything else becomes "X1".
SAMPLES = {"version.version": "3", "ctx.recipe.name": "churn", "self.ctx.recipe.name": "churn",
           "recipe.name": "churn", "plan.recipe_name": "churn", "name": "churn",
           "keys[0]": "customer_id", "ns.out": "plan.json"}

#: A recipe value that is a placeholder a person fills in; ``NAME`` is the CLI's own (its metavar).
#: ``...`` is not: where Loom prints a hint it knows the recipe, so it says which.
PLACEHOLDER_RECIPE = "NAME"

def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string statements: module, class and function docstrings, attribute docstrings."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        for stmt in body if isinstance(body, list) else []:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Constant, ast.JoinedStr)):
                out.add(id(stmt.value))
    return out


def _render(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else SAMPLES.get(ast.unparse(v.value), "X1")
                       for v in node.values)
    return None


def _strings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each user-facing string literal in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        text = None if id(node) in skip else _render(node)
        if text and "loom " in text:
            yield node.lineno, text


def commands_in(text: str) -> list[str]:
    """The ``loom ...`` commands a message suggests."""
    found = re.findall(r"`(loom\b[^`]*)`", text)
    plain = re.sub(r"`[^`]*`", "", text)
    for line in plain.splitlines():
        for m in re.finditer(r"(?<![\w`/.-])loom (?=[a-z-])[^\n]*", line):
            found += [c.strip().rstrip(".,;:)") for c in m.group(0).split("&&")]
    return found


def hints() -> list[tuple[str, int, str]]:
    """(file, line, command) of every command suggested under ``framework/``."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        out += [(rel, line, cmd) for line, text in _strings(path) for cmd in commands_in(text)]
    return out


def problem(command: str) -> str | None:
    """Why ``command`` does not work as printed, or None."""
    tokens = shlex.split(command)
    if tokens[0] != "loom":
        return "does not start with loom"
    if any("..." in t for t in tokens):
        return "'...' is not an argument; print what goes there"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = build_parser().parse_args(tokens[1:])
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    if ns.command is None:
        return "no command"
    if not hasattr(ns, "args"):  # apply, schema: no recipe
        return None
    recipe = [a.split("=", 1)[1] for a in ns.args if a.startswith("recipe=")]
    if not recipe and ns.command not in RECIPE_OPTIONAL:
        return f"`loom {ns.command}` needs recipe=NAME: without it, it fails with 'No recipe given.'"
    if not recipe and ns.args:
        return "overrides without recipe= fail with 'Overrides need a recipe.'"
    if recipe and (not recipe[0] or (recipe[0].isupper() and recipe[0] != PLACEHOLDER_RECIPE)):
        return f"recipe={recipe[0]} is not a recipe name (use the name, or recipe=NAME)"
    return None


HINTS = hints()


@pytest.mark.parametrize(("where", "command"),
                         [pytest.param(rel, cmd, id=f"{rel}:{line}:{cmd}") for rel, line, cmd in HINTS])
def test_every_suggested_command_works_as_printed(where: str, command: str) -> None:
    assert problem(command) is None, f"{where}: `{command}`: {problem(command)}"


def test_the_collector_finds_hints_everywhere_and_skips_docstrings() -> None:
    where = {rel for rel, _, _ in HINTS}
    assert {"framework/cli.py", "framework/backends/model_registry/backend.py",
            "framework/execute/overview.py"} <= where
    assert not any("loom features materialize|get" in c for _, _, c in HINTS)  # a docstring
    assert len(HINTS) >= 30


@pytest.mark.parametrize(("text", "commands"), [
    ("Apply exactly this plan with: loom apply plan.json", ["loom apply plan.json"]),
    ("  loom plan recipe=churn -o p.json && loom apply p.json\n  loom status\n",
     ["loom plan recipe=churn -o p.json", "loom apply p.json", "loom status"]),
    ("see `loom rollout status recipe=churn`, or `loom status`.",
     ["loom rollout status recipe=churn", "loom status"]),
    ("loom 0.3.1", []),
    ("the Loom workspace", []),
])
def test_commands_are_found_in_a_message(text: str, commands: list[str]) -> None:
    assert commands_in(text) == commands


@pytest.mark.parametrize(("command", "why"), [
    ("loom registry promote 1", "needs recipe=NAME"),
    ("loom registry promote recipe=churn --verison 1", "unrecognized arguments"),
    ("loom rollout pause recipe=churn", "invalid choice"),
    ("loom launch recipe=...", "not an argument"),
    ("loom plan ... -o plan.json", "not an argument"),
    ("loom apply", "required"),
    ("loom status env=cluster", "Overrides need a recipe"),
    ("loom launch recipe=RECIPE", "not a recipe name"),
])
def test_broken_commands_are_caught(command: str, why: str) -> None:
    assert why in (problem(command) or "")


@pytest.mark.parametrize("command", [
    "loom registry promote recipe=churn --version 3", "loom launch recipe=NAME --supersede",
    "loom status", "loom apply plan.json", "loom schema", "loom up recipe=churn",
    "loom features get recipe=churn customer_id=42", "loom plan recipe=churn rollout=canary -o p.json",
])
def test_working_commands_pass(command: str) -> None:
    assert problem(command) is None
