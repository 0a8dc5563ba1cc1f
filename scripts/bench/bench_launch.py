"""`loom launch` when nothing changed, and when only serving changed, against `loom validate`.

    python scripts/bench/bench_launch.py [--runs 5]

In a throw-away project (the sample data, its own workspace and Ray head), launches churn once,
then times, each in a fresh process as a person at a terminal runs it:
- `loom launch` of the same recipe (everything up to date): answers `No changes.`; the Ray
  processes on the machine are counted before and after (it must start nothing);
- `loom launch` with one serving key changed (`serving.cache.ttl_s`, alternating two values): a
  redeploy of the Serve application, no retraining;
- baseline: `loom validate` of the same recipe (loading and checking only), in the same run.
Prints the median wall time of each and its ratio to the baseline; stops the head it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOM = str(ROOT / ".venv" / "bin" / "loom")
BASE = ["recipe=churn", "rollout=direct", "serving.http.port=8765", "training.model.num_boost_round=30"]


def ray_processes() -> int:
    import psutil

    return sum(1 for p in psutil.process_iter(["name", "cmdline"])
               if "ray" in (p.info["name"] or "") or "raylet" in " ".join(p.info["cmdline"] or []))


def run(project: Path, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([LOOM, "--project", str(project), *args], capture_output=True, text=True,
                          env={**os.environ, "LOOM_API_KEY": "bench-key-0123456789"})
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"loom {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return took, done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    project = Path(tempfile.mkdtemp(prefix="loom-bench-launch-"))
    shutil.copytree(ROOT / "recipes", project / "recipes")
    shutil.copytree(ROOT / "conf", project / "conf")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_data.py"), "--out", str(project / "data")],
                   check=True, capture_output=True)
    try:
        first, _ = run(project, "launch", *BASE)
        print(f"first launch (train, register, deploy): {first:.1f} s")
        times: dict[str, list[float]] = {"validate": [], "unchanged": [], "serving-only": []}
        started_any = 0
        applied = list(BASE)
        for i in range(args.runs):
            times["validate"].append(run(project, "validate", *applied)[0])
            before = ray_processes()
            took, out = run(project, "launch", *applied)
            if "No changes." not in out:
                raise SystemExit(f"an unchanged launch changed something:\n{out}")
            started_any += max(0, ray_processes() - before)
            times["unchanged"].append(took)
            applied = [*BASE, f"serving.cache.ttl_s={30 + i}"]
            took, out = run(project, "launch", *applied)
            if "update serving.deploy" not in out or "training.train" in out:
                raise SystemExit(f"a serving-only change did not just redeploy:\n{out}")
            times["serving-only"].append(took)
        base = statistics.median(times["validate"])
        print(f"{'case':<14} {'median s':>9} {'min s':>7} {'max s':>7} {'vs validate':>12}")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"{name:<14} {med:>9.2f} {min(values):>7.2f} {max(values):>7.2f} {med / base:>11.2f}x")
        print(f"Ray processes started by the unchanged launches: {started_any}")
    finally:
        subprocess.run([LOOM, "--project", str(project), "down", "recipe=churn"], capture_output=True)
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
