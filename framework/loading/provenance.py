"""Where each value of a composed recipe came from: which template file, the recipe, or the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from framework.loading import bounds
from framework.loading.paths import display

COMMAND_LINE = "command line"
DEFAULT = "default"


@dataclass
class Origins:
    """Maps dotted key paths to the file (or 'command line') that set them last."""

    by_path: dict[str, str] = field(default_factory=dict)
    fallback: str | None = None

    def set_tree(self, prefix: str, node: Any, source: str) -> None:
        """Attribute ``node`` and everything under it to ``source``."""
        self.by_path[prefix] = source
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "defaults" and not prefix:
                    continue
                self.set_tree(f"{prefix}.{key}" if prefix else str(key), value, source)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self.set_tree(f"{prefix}[{i}]", value, source)

    def __call__(self, path: str) -> str | None:
        """The origin of ``path``, or of its nearest ancestor that has one."""
        probe = path
        while probe:
            if probe in self.by_path:
                return self.by_path[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return self.fallback

    def explain(self, path: str) -> str:
        return self.by_path.get(path) or DEFAULT


def _option_file(config_path: str, search_dirs: tuple[Path, ...]) -> Path | None:
    return next((d / f"{config_path}.yaml" for d in search_dirs if (d / f"{config_path}.yaml").is_file()), None)


def package_of(config_path: str, group: str, search_dirs: tuple[Path, ...]) -> str:
    """The package a template option merges into: its ``# @package`` header, else its group."""
    file = _option_file(config_path, search_dirs)
    if file is not None:
        with open(file, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("# @package"):
                    pkg = line.split("@package", 1)[1].strip()
                    return "" if pkg == "_global_" else pkg
                if line.strip() and not line.startswith("#"):
                    break
    return group.replace("/", ".")


def self_last(recipe_file: Path) -> bool:
    """Whether the recipe's own values merge after its templates (``_self_`` last, the convention)."""
    defaults = _load(recipe_file).get("defaults") or []
    return "_self_" not in defaults or defaults.index("_self_") == len(defaults) - 1


def _load(path: Path) -> Any:
    # libyaml's safe loader when present (several times faster), with Loom's limits on aliases and depth.
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=bounds.safe_loader()) or {}  # noqa: S506 - a safe loader


def build(defaults: list[tuple[str, str]], search_dirs: tuple[Path, ...], recipe_file: Path,
          overrides: list[tuple[str, Any]]) -> Origins:
    """Replay the composition order: template options, the recipe itself, then overrides.

    ``defaults`` is Hydra's defaults list as (config_path, package) pairs, in merge order, with the
    recipe itself as ("", "") where ``_self_`` sits.
    """
    origins = Origins(fallback=display(recipe_file))
    for config_path, package in defaults:
        if not config_path:
            file, node = recipe_file, _load(recipe_file)
        else:
            file = _option_file(config_path, search_dirs)
            if file is None:
                continue
            node = _load(file)
        for part in reversed([p for p in package.split(".") if p]):
            node = {part: node}
        origins.set_tree("", node, display(file))
    for key, value in overrides:
        path = ".".join(f"[{p}]" if p.isdigit() else p for p in key.split(".")).replace(".[", "[")
        origins.set_tree(path, value, COMMAND_LINE)
    return origins
