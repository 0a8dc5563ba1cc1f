"""Cost of the per-slot series (``ray_loom_slot_*``) a replica records per request, in a Ray worker.

    python scripts/bench/bench_slot_metrics.py --calls 20000 --rounds 3

Baseline, measured in the same worker and run: the per-request series every replica already
records (``ServeMetrics.request``: one counter and one histogram). Prints microseconds per call of
each and their ratio; the slot call includes binning its score (``score_bins.count_bins``).
"""

from __future__ import annotations

import argparse
import statistics
import time


def _measure(calls: int) -> tuple[float, float]:
    from framework.serving.metrics import ServeMetrics
    from framework.serving.score_bins import PROBABILITY_EDGES, count_bins

    metrics = ServeMetrics("bench")
    started = time.perf_counter()
    for i in range(calls):
        metrics.request("1", "ok", 3.0 + i % 7)
    request_us = (time.perf_counter() - started) / calls * 1e6
    started = time.perf_counter()
    for i in range(calls):
        metrics.slot_answer("1", "stable", True, 3.0 + i % 7,
                            count_bins(PROBABILITY_EDGES, [(i % 100) / 100]))
    return request_us, (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        worker = ray.remote(num_cpus=0)(_measure)
        rounds = [ray.get(worker.remote(args.calls)) for _ in range(args.rounds)]
    finally:
        ray.shutdown()
    request_us = statistics.median(r[0] for r in rounds)
    slot_us = statistics.median(r[1] for r in rounds)
    print(f"per request: request() {request_us:.1f} us (baseline), slot_answer() {slot_us:.1f} us, "
          f"ratio {slot_us / request_us:.2f}x; rounds {[(round(a, 1), round(b, 1)) for a, b in rounds]}")


if __name__ == "__main__":
    main()
