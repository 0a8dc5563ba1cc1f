"""Analysis of one window: error rate, p99, latency ratio, PSI, minimum requests, agreement."""

from __future__ import annotations

import random

import pytest

from framework.rollout.analysis import analyse, psi, split_roles
from framework.spec.rollout import Analysis

LIMITS = Analysis(min_requests=50)


def samples(n, role="candidate", version="4", error_rate=0.0, latency=10.0, shift=0.0, seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = rng.random() >= error_rate
        out.append({"ts": float(i), "version": version, "role": role, "ok": ok,
                    "latency_ms": latency * (0.8 + 0.4 * rng.random()),
                    "score": min(1.0, rng.betavariate(2, 5) + shift) if ok else None,
                    "request_id": i})
    return out


def judge(cand, stable, **kw):
    return analyse(cand, stable, kw.pop("limits", LIMITS), window=(0.0, 10.0),
                   candidate_version="4", **kw)


def test_healthy_candidate_passes_with_every_number():
    r = judge(samples(200), samples(800, role="stable", version="3", seed=2))
    assert r.verdict == "pass"
    assert r.error_rate == 0 and r.n_candidate == 200 and r.n_stable == 800
    assert r.latency_ratio == pytest.approx(1.0, abs=0.1)
    assert r.psi - r.psi_noise < 0.05


@pytest.mark.parametrize("cand_kw, words", [
    ({"error_rate": 0.2}, "error rate"),
    ({"latency": 400.0}, "p99 latency ms"),
    ({"latency": 30.0}, "p99 latency ratio"),
    ({"shift": 0.4}, "score PSI"),
], ids=["errors", "slow", "slower-than-stable", "drift"])
def test_each_broken_threshold_fails_and_is_named(cand_kw, words):
    r = judge(samples(200, **cand_kw), samples(800, role="stable", version="3", seed=2))
    assert r.verdict == "fail"
    assert words in r.reason


def test_too_few_candidate_requests_is_inconclusive_even_if_they_fail():
    r = judge(samples(10, error_rate=0.5), samples(800, role="stable", version="3"))
    assert r.verdict == "inconclusive"
    assert "only 10 of 50" in r.reason


def test_an_accumulated_window_says_how_many_intervals_it_judged():
    stable = samples(800, role="stable", version="3")
    quiet = judge(samples(10), stable, intervals=3)
    assert quiet.verdict == "inconclusive" and quiet.intervals == 3
    assert "only 10 of 50 candidate requests needed to judge over 3 intervals" in quiet.reason
    assert quiet.accumulation == {"since": 0.0, "until": 10.0, "intervals": 3,
                                  "n_candidate": 10, "n_stable": 800}
    judged = judge(samples(60, error_rate=0.2), stable, intervals=4)
    assert judged.verdict == "fail" and judged.accumulation is None
    assert "judged on 60 candidate requests of 4 intervals together" in judged.reason
    assert judged.to_dict()["intervals"] == 4
    assert "intervals" not in judge(samples(60), stable).reason  # one interval: as before


def test_no_stable_traffic_uses_the_baseline_then_skips_relative_checks():
    cand = samples(200, latency=30.0)
    base = samples(200, role="stable", version="3", seed=3)
    with_base = judge(cand, [], baseline=base)
    assert with_base.verdict == "fail" and with_base.baseline == "earlier window"
    alone = judge(cand, [])
    assert alone.verdict == "pass" and alone.latency_ratio is None and alone.psi is None
    assert "not judged" in alone.reason


def test_shadow_agreement_pairs_by_request_id():
    stable = samples(300, role="stable", version="3", seed=5)
    shadow = [dict(s, role="shadow", version="4") for s in stable[:200]]
    r = judge(shadow, stable, role="shadow")
    assert r.agreement == 1.0 and r.n_pairs == 200


def test_psi_is_zero_for_same_scores_and_grows_with_shift():
    same = [i / 100 for i in range(100)]
    assert psi(same, same) == pytest.approx(0.0)
    assert psi(same, [min(1.0, s + 0.3) for s in same]) > 0.5
    assert psi(list(range(100)), [x + 50 for x in range(100)]) > 0.5  # regression scores


def test_split_roles_ignores_other_versions():
    mixed = samples(5) + samples(5, version="9") + samples(5, role="stable", version="3")
    cand, stable = split_roles(mixed, "4", "3", "candidate")
    assert len(cand) == 5 and len(stable) == 5


def _timed(latencies, role="candidate", version="4"):
    return [{"ts": float(i), "version": version, "role": role, "ok": True, "latency_ms": ms,
             "score": 0.3, "request_id": i} for i, ms in enumerate(latencies)]


def test_one_straggler_does_not_make_a_tail_but_two_do():
    # A canary judged on 4 requests failed at a latency ratio of 24 for one 48 ms answer (CI).
    limits = Analysis(min_requests=4, max_latency_ratio=10, max_prediction_psi=100)
    stable = _timed([1.5, 1.8, 1.6, 1.7, 1.9, 1.4, 1.6, 1.5, 1.8, 1.7, 1.6, 1.5], "stable", "3")
    one = judge(_timed([1.6, 47.9, 1.7, 1.5]), stable, limits=limits)
    assert one.verdict == "pass" and one.p99_ms == 1.7, one.reason
    two = judge(_timed([1.6, 47.9, 1.7, 45.0]), stable, limits=limits)
    assert two.verdict == "fail" and two.p99_ms == 45.0
    assert "p99 latency ratio to stable 22.50 > 10.00" in two.reason


@pytest.mark.parametrize("n, expected", [(1, 1.0), (2, 1.0), (4, 3.0), (99, 98.0), (100, 99.0),
                                         (200, 198.0), (1000, 990.0)])
def test_p99_is_nearest_rank_with_at_least_two_requests_at_or_above_it(n, expected):
    from framework.rollout.analysis import p99

    values = [float(v) for v in range(1, n + 1)]
    random.Random(n).shuffle(values)
    assert p99(values) == expected
    assert p99([]) is None
