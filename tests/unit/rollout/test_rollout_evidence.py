"""Both analysis sources judge alike: samples one by one, or Prometheus-style counts of them."""

from __future__ import annotations

import math
import random

import pytest

from framework.rollout.evidence import SampleEvidence, Tally, TallyEvidence, histogram_p99
from framework.rollout.fakes import Behaviour, CountingSource, tally
from framework.rollout.prometheus import PrometheusSource
from framework.serving.metrics import LATENCY_BOUNDARIES_MS
from framework.spec.rollout import Analysis

from rollout_world import canary_spec

LIMITS = Analysis(min_requests=50)


def samples(n, role="candidate", version="4", error_rate=0.0, latency=10.0, shift=0.0, seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = rng.random() >= error_rate
        out.append({"ts": float(i), "version": version, "role": role, "ok": ok,
                    "latency_ms": latency * (0.8 + 0.4 * rng.random()),
                    "score": min(1.0, rng.betavariate(2, 5) + shift) if ok else None})
    return out


def both(cand_kw, n=200):
    window = samples(n, **cand_kw) + samples(800, role="stable", version="3", seed=2)
    by_samples = SampleEvidence(window, "4", "3", "candidate")
    counted = TallyEvidence(tally(window, "4", "candidate"), tally(window, "3", "stable"), "4",
                            "candidate")
    kw = {"window": (0.0, 10.0), "baseline": None, "intervals": 1}
    return by_samples.analyse(LIMITS, **kw), counted.analyse(LIMITS, **kw)


@pytest.mark.parametrize("cand_kw, verdict, words", [
    ({}, "pass", None),
    ({"error_rate": 0.2}, "fail", "error rate"),
    ({"latency": 400.0}, "fail", "p99 latency ms"),
    ({"latency": 30.0}, "fail", "p99 latency ratio"),
    ({"shift": 0.4}, "fail", "score PSI"),
], ids=["healthy", "errors", "slow", "slower-than-stable", "drift"])
def test_counts_judge_as_the_samples_do(cand_kw, verdict, words):
    s, c = both(cand_kw)
    assert s.verdict == c.verdict == verdict, (s.reason, c.reason)
    assert (s.n_candidate, s.n_stable, s.candidate_errors) == (c.n_candidate, c.n_stable,
                                                               c.candidate_errors)
    assert s.error_rate == c.error_rate
    assert c.psi == pytest.approx(s.psi) and c.psi_noise == pytest.approx(s.psi_noise)
    # A histogram's p99 lies in the bucket of the exact one.
    bounds = [0.0, *LATENCY_BOUNDARIES_MS, math.inf]
    upper = next(b for b in bounds if b >= s.p99_ms)
    lower = bounds[bounds.index(upper) - 1]
    assert lower <= c.p99_ms <= upper
    if words:
        assert words in s.reason and words in c.reason
    assert c.agreement is None and c.n_pairs == 0  # counters keep no pairs of answers


def test_too_few_counted_requests_is_inconclusive():
    s, c = both({}, n=10)
    assert s.verdict == c.verdict == "inconclusive"
    assert "only 10 of 50" in c.reason


@pytest.mark.parametrize("buckets, n, expected", [
    (((1.0, 0), (2.0, 4), (math.inf, 4)), 4, 1.75),   # rank 3 of 4: 3/4 of the way into (1, 2]
    (((1.0, 1), (math.inf, 2)), 2, 1.0),             # rank 1: not the lone straggler above 1 ms
    (((1.0, 0), (math.inf, 3)), 3, 1.0),             # in +Inf: the highest finite bound
    ((), 0, None),
])
def test_histogram_p99_uses_the_samples_rank(buckets, n, expected):
    assert histogram_p99(buckets, n) == expected


def test_a_tally_without_shared_score_bins_leaves_psi_unjudged():
    cand = Tally(60, 0, ((10.0, 60), (math.inf, 60)), None)
    stable = Tally(200, 0, ((10.0, 200), (math.inf, 200)), (20,) * 10)
    r = TallyEvidence(cand, stable, "4", "candidate").analyse(
        LIMITS, window=(0.0, 1.0), baseline=None, intervals=1)
    assert r.verdict == "pass" and r.psi is None


# ---- PrometheusSource's arithmetic over canned query answers --------------------------------


class CannedPrometheus(PrometheusSource):
    """``_vector`` answers from a table: {time: [(labels, value)]} per metric name."""

    def __init__(self, table):
        super().__init__("http://prom.invalid:9090", "churn", scrape_interval_s=1.0,
                         report_interval_s=2.0)
        self.table = table

    def _vector(self, query, at):
        name = query.split("(", 1)[1].split("{", 1)[0]
        rows = self.table.get(name, {}).get(at, [])
        return {frozenset(labels.items()): (labels, float(value)) for labels, value in rows}


def _s(replica, version, role, outcome, value):
    return {"model": "churn", "version": version, "role": role, "outcome": outcome,
            "replica": replica}, value


def test_deltas_count_new_series_from_zero_and_a_reset_from_its_new_value():
    t0, t1 = 100.0 + 3.0, 110.0 + 3.0  # the window [100, 110) read 3 s (report + scrape) later
    prom = CannedPrometheus({"ray_loom_slot_requests_total": {
        t0: [_s("a", "3", "stable", "ok", 50), _s("b", "3", "stable", "ok", 70)],
        t1: [_s("a", "3", "stable", "ok", 80),        # +30
             _s("b", "3", "stable", "ok", 5),         # reset: a new replica, 5 since
             _s("a", "4", "candidate", "ok", 9),      # born in the window: 9
             _s("a", "4", "candidate", "error", 2)],
    }})
    assert prom.delay_s == 3.0 and prom.lag_s == 4.0
    got = prom.deltas("ray_loom_slot_requests_total", 'model="churn"', t0, t1,
                      ("version", "role", "outcome"))
    assert got == {("3", "stable", "ok"): 35.0, ("4", "candidate", "ok"): 9.0,
                   ("4", "candidate", "error"): 2.0}
    ev = prom.evidence(100.0, 110.0, "4", "3", "candidate")
    assert (ev.candidate.requests, ev.candidate.errors, ev.stable.requests) == (11, 2, 35)


def test_a_prometheus_without_the_models_series_is_an_error_naming_the_url():
    from framework.errors import BackendError

    with pytest.raises(BackendError, match="holds no ray_loom_slot_requests_total.*prometheus_url"):
        CannedPrometheus({}).evidence(100.0, 110.0, "4", "3", "candidate")


def test_an_unreachable_prometheus_is_an_error_naming_the_key():
    from framework.errors import BackendError

    source = PrometheusSource("http://127.0.0.1:1", "churn", 1.0, report_interval_s=1.0,
                              timeout_s=2.0)
    with pytest.raises(BackendError, match="did not answer.*monitoring.prometheus_url"):
        source.evidence(100.0, 110.0, "4", "3", "candidate")


# ---- the controller on counts ------------------------------------------------------------------


def _rollout(world, lag_s=4.0):
    from framework.rollout.controller import RolloutController

    ctl = RolloutController.start(world.store, canary_spec(), setter=world.serving,
                                  source=CountingSource(world.serving, lag_s=lag_s),
                                  promoter=world.promoter, clock=world.clock, sample_lag_s=0.5)
    assert ctl.sample_lag_s == lag_s  # the source's lag wins
    return ctl.run(poll_s=0.5)


def test_the_controller_promotes_and_rolls_back_on_counts(make_world):
    healthy = make_world()
    assert _rollout(healthy).status == "promoted" and healthy.promoter.champion == "4"
    bad = make_world(**{"4": Behaviour(error_rate=0.3)})
    state = _rollout(bad)
    assert state.status == "rolled_back" and "error rate" in state.reason
    assert bad.promoter.champion == "3"
    judged = [r for r in bad.store.read_audit() if r["event"] == "analysis"]
    # A window is judged lag_s after it ends, or at its end on a failure already visible.
    assert judged and all(r["ts"] >= r["window_end"] + 4.0 or
                          (r["verdict"] == "fail" and r["ts"] >= r["window_end"]) for r in judged)
