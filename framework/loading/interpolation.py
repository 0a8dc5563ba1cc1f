"""What a ``${...}`` in a recipe calls and refers to, read with OmegaConf's own grammar (not a regex guess)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from framework.loading.bounds import MAX_DEPTH, nesting_depth


@dataclass(frozen=True)
class Resolver:
    """A ``${name:args}`` call; ``built`` when the name itself holds an interpolation."""

    name: str
    built: bool
    args_built: bool


@dataclass(frozen=True)
class Reference:
    """A ``${key}`` reference as written (``.sibling``, ``a.b[0]``); ``built`` when the key holds one."""

    key: str
    built: bool


class Unreadable(ValueError):
    """The text is not a valid interpolation (OmegaConf could not resolve it either), or goes past a limit."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def read(value: str) -> tuple[list[Resolver], list[Reference]]:
    """Every resolver call and node reference in ``value``, nested ones included, in order.

    Raises:
        Unreadable: the text does not parse, or nests deeper than ``bounds.MAX_DEPTH``.
    """
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser as P
    from omegaconf.grammar_parser import parse

    if nesting_depth(value) > MAX_DEPTH:
        raise Unreadable(f"brackets nest more than {MAX_DEPTH} deep")
    try:
        stack: list[Any] = [parse(value)]
    except (GrammarParseError, RecursionError) as exc:
        raise Unreadable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    resolvers, references = [], []
    while stack:
        node = stack.pop()
        if isinstance(node, P.InterpolationResolverContext):
            name = node.resolverName()
            args = node.sequence()
            resolvers.append(Resolver(name.getText(), bool(name.interpolation()),
                                      args is not None and "${" in args.getText()))
        elif isinstance(node, P.InterpolationNodeContext):
            references.append(Reference(node.getText()[2:-1],
                                        any(k.interpolation() is not None for k in node.configKey())))
        stack.extend(reversed(getattr(node, "children", None) or []))
    return resolvers, references


def _parts(path: str) -> list[str]:
    return [p for p in re.split(r"\.|\[|\]", path) if p]


def target_parts(path: str, key: str) -> list[str]:
    """The absolute key parts ``key`` refers to from the value at ``path`` (``.x`` is a sibling)."""
    dots = len(key) - len(key.lstrip("."))
    base = _parts(path)[: max(len(_parts(path)) - dots, 0)] if dots else []
    return base + _parts(key[dots:])


def locate(data: Any, parts: list[str]) -> tuple[str, Any, bool]:
    """(dotted path as Loom writes it, the value there, whether it exists) in a plain dict/list tree."""
    path, node, found = "", data, True
    for part in parts:
        as_index = part.isdigit() and not (found and isinstance(node, dict))
        if found and isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif found and isinstance(node, dict) and part in node:
            node = node[part]
        else:
            found, node = False, None
        path += f"[{part}]" if as_index else (f".{part}" if path else part)
    return path, node, found


#: Largest a value may grow once its references are resolved (characters, plus one per list or mapping).
MAX_EXPANDED = 1_000_000
#: Longest chain of references (``a: ${b}``, ``b: ${c}`` ...) followed when sizing a value.
MAX_HOPS = 10


def oversized(data: dict[str, Any], refs: dict[str, list[list[str]]]) -> str | None:
    """The first path in ``refs`` whose value, resolved, exceeds ``MAX_EXPANDED`` (``${a}${a}`` doubles).

    ``refs`` maps each value's path to the key parts it refers to. Sizes are memoised per path, so
    this is linear in the recipe however the references multiply.

    Raises:
        Unreadable: references chain more than ``MAX_HOPS`` deep.
    """
    memo: dict[str, tuple[int, int]] = {}  # path -> (size, longest chain of references below)

    def size(path: str, node: Any, hops: int) -> tuple[int, int]:
        if path in memo:
            return memo[path]
        memo[path] = (0, 0)  # a cycle counts nothing here; OmegaConf reports it
        if isinstance(node, (dict, list)):
            items = node.items() if isinstance(node, dict) else enumerate(node)
            inner = [size(f"{path}[{k}]" if isinstance(node, list) else (f"{path}.{k}" if path else str(k)),
                          v, hops) for k, v in items]
            found = (1 + sum(n for n, _ in inner), max((c for _, c in inner), default=0))
        elif path in refs:
            inner = [size(*locate(data, parts)[:2], hops + 1) for parts in refs[path]] \
                if hops < MAX_HOPS else [(0, MAX_HOPS)]
            found = (len(node) + sum(n for n, _ in inner), 1 + max(c for _, c in inner))
        else:
            found = (max(1, len(str(node))), 0)
        if found[1] > MAX_HOPS:
            raise Unreadable(f"References chain more than {MAX_HOPS} deep here", path)
        memo[path] = found
        return found

    for path in refs:
        if size(path, locate(data, _parts(path))[1], 0)[0] > MAX_EXPANDED:
            return path
    return None
