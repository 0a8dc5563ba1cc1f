"""Small JSON marker files for steps with no registry object (materialization, training dataset)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MARKER_DIR = "markers"


def marker_path(repo: Path, address: str) -> Path:
    """``<repo>/markers/<address>.json`` (``repo``: the project's feature repo directory)."""
    return Path(repo) / MARKER_DIR / f"{address}.json"


def read_marker(repo: Path, address: str) -> dict[str, Any] | None:
    """The marker apply wrote for ``address``, or None when absent or unreadable."""
    path = marker_path(repo, address)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_marker(repo: Path, address: str, fingerprint: str, outputs: dict[str, Any],
                 **extra: Any) -> None:
    """Record that ``address`` was applied with ``fingerprint`` (atomically: write, then rename)."""
    path = marker_path(repo, address)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body = {"fingerprint": fingerprint, "outputs": outputs, **extra}
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def remove_marker(repo: Path, address: str) -> dict[str, Any] | None:
    """Delete the marker of ``address``; return what it held (None when there was none)."""
    marker = read_marker(repo, address)
    marker_path(repo, address).unlink(missing_ok=True)
    return marker
