"""The lock file agrees with pyproject.toml, so `make install` installs what the pins say."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    lines = (ROOT / "scripts" / "constraints.txt").read_text().splitlines()
    pins = [PIN.match(line) for line in lines if line.strip() and not line.startswith("#")]
    assert all(pins), "every line of scripts/constraints.txt is name==version"
    return {_norm(m.group(1)): m.group(2) for m in pins}


def test_every_top_level_pin_is_locked_at_the_same_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for ds in project["optional-dependencies"].values()
                                      for d in ds]
    locked = _locked()
    for dep in deps:
        m = PIN.match(dep)
        assert m, f"pyproject.toml: {dep!r} is not pinned with =="
        name, version = _norm(m.group(1)), m.group(2)
        assert locked.get(name) == version, (
            f"pyproject.toml pins {name}=={version}, scripts/constraints.txt has "
            f"{locked.get(name)}; run `make lock`")


def test_the_lock_pins_the_transitive_packages_that_broke_installs_before():
    locked = _locked()
    for name in ("fastapi", "starlette", "uvicorn", "grpcio", "duckdb"):
        assert name in locked, f"{name} is not locked"
