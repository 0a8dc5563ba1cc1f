"""The Feast 0.67 backend: feature repo, registry objects, materialization, datasets, online lookup.

Importing this package does not import feast; the names below load their module on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FeastBackend": "framework.backends.feast.backend",
    "OnlineFeatureClient": "framework.backends.feast.online",
    "check_sources": "framework.backends.feast.sources",
    "fingerprint_sources": "framework.backends.feast.sources",
    "materialize": "framework.backends.feast.commands",
    "get_online": "framework.backends.feast.commands",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
