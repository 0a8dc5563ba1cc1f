"""Limits on the YAML Loom reads: alias expansion, nesting depth, and defaults entries that leave the search path.

Every YAML file Hydra loads while Loom composes (the recipe, its templates, Hydra's own config) goes
through ``bounded_loader()``: before a node is built, the file's parser events are counted, so a
"billion laughs" of anchors and aliases or a list nested a thousand deep is refused in milliseconds
with the file, line, key and limit, instead of exhausting memory or Python's stack in OmegaConf.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Any

import yaml

from framework.errors import Problem

#: Deepest nesting of lists and mappings in one file (or override); recipes need well under 10.
MAX_DEPTH = 32
#: Most values (scalars, lists, mappings) one file may hold once its aliases are expanded.
MAX_VALUES = 10_000

_CHEAP_LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


class LimitError(yaml.MarkedYAMLError):
    """A YAML file breaks one of Loom's limits; ``problem_at()`` says where, what and the fix."""

    def __init__(self, mark: Any, key: str, message: str, hint: str, value: object = None) -> None:
        super().__init__(problem=message, problem_mark=mark)
        self.key, self.message, self.hint, self.value = key, message, hint, value

    def problem_at(self, display: Any) -> Problem:
        """The Problem for a report, ``display`` turning the file name into a readable path."""
        mark = self.problem_mark
        return Problem(path=self.key, file=f"{display(mark.name)}:{mark.line + 1}", message=self.message,
                       value=self.value, has_value=self.value is not None, hint=self.hint)


class _Named(io.StringIO):
    """YAML text that keeps its file's name, so marks (and errors) name the file."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.name = name


@dataclass
class _Open:
    """A list or mapping being read: its anchor, where its values start, its keys so far."""

    anchor: str | None
    start: int
    mapping: bool
    items: int = 0
    key: str = ""
    height: int = 0
    path: list[str] = field(default_factory=list)


def _child_path(parent: _Open | None, event: Any) -> list[str]:
    if parent is None:
        return []
    if not parent.mapping:
        return [*parent.path, f"[{parent.items}]"]
    if parent.items % 2 == 0:  # a key: its own path is the mapping's
        parent.key = str(event.value) if isinstance(event, yaml.ScalarEvent) else "?"
        return parent.path
    return [*parent.path, parent.key]


def _dotted(parts: list[str]) -> str:
    return "".join(p if p.startswith("[") else (f".{p}" if i else p) for i, p in enumerate(parts))


def check_events(stream: Any) -> None:
    """Raise LimitError when the YAML in ``stream`` nests too deep or expands to too many values.

    Counts parser events (no node is built): an alias adds the size of its anchor, so the count is
    that of the fully expanded document, in time linear in the file's length.
    """
    anchors: dict[str, tuple[int, int]] = {}  # name -> (values, height)
    stack: list[_Open] = []
    values = 0
    for event in yaml.parse(stream, Loader=_CHEAP_LOADER):
        if not isinstance(event, (yaml.NodeEvent, yaml.CollectionEndEvent)):
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            done = stack.pop()
            if done.anchor:
                anchors[done.anchor] = (values - done.start, done.height + 1)
            if stack:
                stack[-1].height = max(stack[-1].height, done.height + 1)
                stack[-1].items += 1
            continue
        parent = stack[-1] if stack else None
        path = _child_path(parent, event)
        if isinstance(event, yaml.AliasEvent):
            if any(o.anchor == event.anchor for o in stack):
                raise LimitError(event.start_mark, _dotted(path), f"Alias *{event.anchor} refers to "
                                 "its own anchor: a document that contains itself never ends.",
                                 "Write the values out instead of the alias.")
            size, height = anchors.get(event.anchor, (1, 0))
        else:
            size, height = 1, 0
        values += size
        if values > MAX_VALUES:
            raise LimitError(event.start_mark, _dotted(path), f"This file holds more than {MAX_VALUES:,} "
                             "values once its aliases (*name) are expanded; that is the limit.",
                             "Recipes are small: write values out or use fewer nested &anchors/*aliases.")
        depth = len(stack) + height + isinstance(event, yaml.CollectionStartEvent)
        if depth > MAX_DEPTH:
            raise LimitError(event.start_mark, _dotted(path), f"Lists and mappings nest more than "
                             f"{MAX_DEPTH} deep here; that is the limit.",
                             "Flatten the structure: recipes need only a few levels.")
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append(_Open(event.anchor, values - 1, isinstance(event, yaml.MappingStartEvent),
                               path=path))
            continue
        if isinstance(event, yaml.ScalarEvent) and event.anchor:
            anchors[event.anchor] = (1, 0)
        if parent is not None:
            parent.items += 1
            parent.height = max(parent.height, height)


def leaves_search_path(option: str) -> bool:
    """Whether a defaults entry's group or option is a path out of the template folders."""
    return option.startswith(("/", "~")) or ".." in option.replace("\\", "/").split("/")


def _option_texts(node: Any) -> list[str]:
    if isinstance(node, yaml.ScalarNode):
        return [str(node.value)]
    if isinstance(node, yaml.SequenceNode):
        return [str(n.value) for n in node.value if isinstance(n, yaml.ScalarNode)]
    return []


def check_defaults(root: Any) -> None:
    """Raise LimitError when an entry of the file's ``defaults`` list names a path outside the search path.

    ``- serving: ../../../x`` would load ``x.yaml`` three folders above a template folder. A group
    may start with '/' (Hydra's "from the top of the config tree"); an option may not.
    """
    if not isinstance(root, yaml.MappingNode):
        return
    defaults = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "defaults"),
                    None)
    if not isinstance(defaults, yaml.SequenceNode):
        return
    for i, entry in enumerate(defaults.value):
        pairs = entry.value if isinstance(entry, yaml.MappingNode) else [(None, entry)]
        for key, option in pairs:
            group = str(key.value).split()[-1].lstrip("/") if isinstance(key, yaml.ScalarNode) else ""
            texts = [group] + _option_texts(option) if group else _option_texts(option)
            if any(leaves_search_path(t) for t in texts):
                shown = f"{key.value}: {option.value}" if key is not None else str(option.value)
                raise LimitError(entry.start_mark, f"defaults[{i}]", "A defaults entry may not leave the "
                                 "template folders: '..' and absolute paths are refused.",
                                 "Name an option of a template group (e.g. serving: standard); keep shared "
                                 "templates in a folder given with --templates or $LOOM_TEMPLATE_PATH.",
                                 value=shown)


class BoundedLoading:
    """Loader mixin: the limits above are checked before the document is composed and built."""

    def __init__(self, stream: Any) -> None:
        name = getattr(stream, "name", None)
        text = stream if isinstance(stream, str) else stream.read()
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        check_events(_Named(text, name) if name else text)
        super().__init__(_Named(text, name) if name else text)  # type: ignore[call-arg]

    def get_single_data(self) -> Any:
        node = self.get_single_node()  # type: ignore[attr-defined]
        if node is None:
            return None
        check_defaults(node)
        return self.construct_document(node)  # type: ignore[attr-defined]


def bounded(loader: type) -> type:
    """``loader`` with the limits checked on every document it reads."""
    return type(f"Bounded{loader.__name__}", (BoundedLoading, loader), {})


@functools.lru_cache(maxsize=1)
def safe_loader() -> type:
    """A bounded safe loader (LibYAML's when present), for YAML Loom reads itself."""
    return bounded(getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def nesting_depth(text: str) -> int:
    """How deep brackets ``[ { (`` nest in an override or interpolation, outside quotes."""
    depth = deepest = 0
    quote = ""
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]})":
            depth -= 1
    return deepest
