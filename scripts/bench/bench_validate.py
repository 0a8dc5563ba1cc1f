"""`loom validate` vs a bare Hydra compose of the same files, each in a fresh process.

    python scripts/bench/bench_validate.py [--runs 15]

Both sides pay interpreter start-up and their imports, as a person at a terminal does. The baseline
composes recipes/churn.yaml over conf/ with Hydra's Compose API and converts it to a dict; Loom also
validates it with pydantic, runs every check, and rejects hostile content.

Both sides read their modules' bytecode caches, as Python normally does after the first run: Hydra's
came with its wheel, Loom's (an editable install) are written by ``compileall`` first, because an
environment with ``PYTHONDONTWRITEBYTECODE`` set would otherwise compile Loom's sources on every run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASELINE = """
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
with initialize_config_dir(config_dir={recipes!r}, version_base="1.3"):
    cfg = compose("churn", overrides=["hydra.searchpath=[file://{conf}]"])
    OmegaConf.to_container(cfg, resolve=False)
"""


def timed(cmd: list[str], runs: int) -> list[float]:
    env = {**os.environ, "LOOM_API_KEY": "bench"}
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def interleaved(cases: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """One run of every case in turn, ``runs`` times: drifting machine load hits every case alike."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, cmd in cases.items():
            results[name].extend(timed(cmd, 1))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    baseline = [sys.executable, "-c", BASELINE.format(recipes=str(ROOT / "recipes"), conf=ROOT / "conf")]
    cases = {
        "bare hydra compose": baseline,
        "loom validate": [sys.executable, "-m", "framework", "validate", "recipe=churn"],
        "loom plan": [sys.executable, "-m", "framework", "plan", "recipe=churn"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "framework")], check=True,
                   capture_output=True)
    timed(cases["loom validate"], 2)  # warm the file cache
    results = interleaved(cases, args.runs)
    base = statistics.median(results["bare hydra compose"])
    print(f"{'case':<20} {'median s':>9} {'p90 s':>7} {'ratio':>6}")
    for name, samples in results.items():
        med = statistics.median(samples)
        p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
        print(f"{name:<20} {med:>9.3f} {p90:>7.3f} {med / base:>6.2f}")


if __name__ == "__main__":
    main()
