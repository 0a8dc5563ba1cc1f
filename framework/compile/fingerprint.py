"""Stable content fingerprints: sha256 over canonical JSON, so equal inputs give equal fingerprints."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace; the byte form fingerprints are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(*parts: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``parts``."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def short(fp: str | None, n: int = 12) -> str:
    """The first ``n`` hex digits, for display."""
    if not fp:
        return "-"
    return fp.split(":", 1)[-1][:n]
