"""OmegaConf's YAML loader rebuilt on LibYAML: the same rules, parsed in C, while Loom composes.

OmegaConf builds a new pure-Python ``SafeLoader`` subclass for every file it loads; parsing the
recipe, its templates and Hydra's own config files that way is a fifth of a compose. The loader here
keeps OmegaConf's rules exactly (its implicit resolvers: YAML 1.2-style floats, no timestamps; its
constructors; duplicate keys refused) on ``yaml.CSafeLoader``, built once. ``libyaml_loader()``
swaps it in for the duration of a compose only, so a program that imports Loom keeps OmegaConf as
it was. Without LibYAML it swaps in OmegaConf's own loader. Either way the loader is bounded
(``bounds.py``): alias bombs, runaway nesting and defaults entries that leave the search path are
refused before OmegaConf builds anything.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import yaml

from framework.loading.bounds import BoundedLoading, bounded


def _construct_mapping(self: Any, node: Any, deep: bool = False) -> Any:
    # OmegaConf's rule, verbatim: a key twice in one mapping is an error.
    keys = set()
    for key_node, _ in node.value:
        if key_node.tag != yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
            continue
        if key_node.value in keys:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key_node.value}", key_node.start_mark)
        keys.add(key_node.value)
    return yaml.constructor.SafeConstructor.construct_mapping(self, node, deep=deep)


@functools.lru_cache(maxsize=1)
def fast_loader() -> Any:
    """A ``CSafeLoader`` with OmegaConf's resolvers and constructors (None without LibYAML)."""
    from omegaconf import _utils

    if not getattr(yaml, "__with_libyaml__", False):
        return None
    reference = _utils.get_yaml_loader()
    return type("LoomOmegaConfLoader", (BoundedLoading, yaml.CSafeLoader), {
        "construct_mapping": _construct_mapping,
        "yaml_implicit_resolvers": dict(reference.yaml_implicit_resolvers),
        "yaml_constructors": dict(reference.yaml_constructors),
    })


@functools.lru_cache(maxsize=1)
def compose_loader() -> Any:
    """The loader used while composing: ``fast_loader()``, else OmegaConf's own, bounded either way."""
    from omegaconf import _utils

    return fast_loader() or bounded(_utils.get_yaml_loader())


@contextlib.contextmanager
def libyaml_loader() -> Iterator[None]:
    """OmegaConf loads YAML with ``compose_loader()`` inside the block (as before outside it)."""
    from omegaconf import _utils, basecontainer

    loader = compose_loader()
    original = _utils.get_yaml_loader
    _utils.get_yaml_loader = basecontainer.get_yaml_loader = lambda: loader
    try:
        yield
    finally:
        _utils.get_yaml_loader = basecontainer.get_yaml_loader = original
