"""In-memory stand-ins for the clock, the Serve app and the registry, for fast controller tests.

``FakeServing`` is both the TrafficSetter and the SampleSource: it keeps the history of user_configs
and synthesises the per-request samples the replicas would record at a steady request rate, with
per-version behaviour (error rate, latency, score shift), deterministically.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
import os
import random
from dataclasses import dataclass
from typing import Any


class FakeClock:
    """A clock whose ``sleep`` advances time at once."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 1e-3)


@dataclass(frozen=True)
class Behaviour:
    """How one model version answers: share of errors, latency and a shift of its scores."""

    error_rate: float = 0.0
    latency_ms: float = 10.0
    score_shift: float = 0.0


class FakeServing:
    """A Serve app with version slots: records every user_config and makes samples on request."""

    def __init__(
        self, clock: FakeClock, config: dict[str, Any] | None, rps: float = 100.0,
        behaviours: dict[str, Behaviour] | None = None, seed: int = 7, apply_s: float = 0.0,
    ) -> None:
        self.clock, self.rps, self.seed = clock, rps, seed
        self.apply_s = apply_s  # how long an update takes to go live (Serve: about 0.5 s)
        self.created = clock.now()  # no requests before the app existed
        self.behaviours = behaviours or {}
        self.history: list[tuple[float, dict[str, Any]]] = []
        if config is not None:
            self.history.append((-math.inf, copy.deepcopy(config)))
        self.fail_next_sets = 0
        self.surges: list[bool] = []  # the ``surge`` flag of every ``set``

    # TrafficSetter
    def set(self, user_config: dict[str, Any], surge: bool = False) -> None:
        if self.fail_next_sets:
            self.fail_next_sets -= 1
            raise ConnectionError("fake Serve controller unreachable")
        if self.apply_s:
            self.clock.sleep(self.apply_s)  # the old config answers until the update is live
        self.history.append((self.clock.now(), copy.deepcopy(user_config)))
        self.surges.append(surge)

    def current(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.history[-1][1]) if self.history else None

    @property
    def updates(self) -> list[tuple[float, dict[str, Any]]]:
        """Changes made through ``set`` (the initial config excluded)."""
        return [h for h in self.history if h[0] != -math.inf]

    # SampleSource
    def window(self, start: float, end: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        start = max(start, self.created)
        for i in range(math.ceil(start * self.rps), math.ceil(end * self.rps)):
            out.extend(self._request(i, i / self.rps))
        return out

    def _request(self, i: int, ts: float) -> list[dict[str, Any]]:
        cfg = self._config_at(ts)
        if not cfg:
            return []
        rng = random.Random(self.seed * 1_000_003 + i)
        slots = cfg["slots"]
        base = rng.betavariate(2, 5)
        cand = slots.get("candidate")
        record = bool(cfg.get("record_samples", False))  # as replicas: only when asked to
        if cand and rng.random() * 100 < float(cfg.get("candidate_weight", 0)):
            return [self._sample(rng, ts, cand, "candidate", base, i)] if record else []
        samples = [self._sample(rng, ts, slots["stable"], "stable", base, i)] if record else []
        if cand and rng.random() * 100 < float(cfg.get("shadow_percent", 0)):
            samples.append(self._sample(rng, ts, cand, "shadow", base, i))
        return samples

    def _config_at(self, ts: float) -> dict[str, Any] | None:
        times = [t for t, _ in self.history]
        k = bisect.bisect_right(times, ts) - 1
        return self.history[k][1] if k >= 0 else None

    def _sample(
        self, rng: random.Random, ts: float, slot: dict[str, Any], role: str, base: float, i: int
    ) -> dict[str, Any]:
        b = self.behaviours.get(str(slot["version"]), Behaviour())
        ok = rng.random() >= b.error_rate
        score = min(1.0, max(0.0, base + b.score_shift)) if ok else None
        latency = b.latency_ms * (0.8 + 0.4 * rng.random())
        return {"ts": ts, "version": str(slot["version"]), "role": role, "ok": ok,
                "latency_ms": latency, "instances": 1, "score": score, "request_id": i}


class FakePromoter:
    """Remembers where the champion alias points and which versions were tagged."""

    def __init__(self, champion: str | None = None) -> None:
        self.champion = champion
        self.tags: dict[str, str] = {}
        self.moves: list[str] = []

    def promote(self, version: str) -> None:
        self.champion = version
        self.moves.append(version)

    def tag_rollback(self, version: str, reason: str) -> None:
        self.tags[version] = reason


def slot(version: str) -> dict[str, Any]:
    """A user_config slot for ``version`` with made-up paths."""
    return {"version": version, "model_path": f"/models/{version}/model.ubj",
            "model_uri": f"models:/fake/{version}"}


def initial_config(stable: str = "3", candidate: str | None = "4") -> dict[str, Any]:
    """The user_config the serving deploy step leaves: both slots loaded, candidate at 0%."""
    return {"slots": {"stable": slot(stable), "candidate": slot(candidate) if candidate else None},
            "candidate_weight": 0, "shadow_percent": 0, "config_version": 1}


class FilePromoter:
    """A registry in a JSON file, so a controller in another process (the actor) can be checked."""

    def __init__(self, path: str, champion: str | None = None) -> None:
        self.path = path
        if champion is not None and not os.path.exists(path):
            self._write({"champion": champion, "tags": {}, "moves": []})

    @property
    def champion(self) -> str | None:
        return self._read()["champion"]

    @property
    def tags(self) -> dict[str, str]:
        return self._read()["tags"]

    def promote(self, version: str) -> None:
        data = self._read()
        data["champion"] = version
        data["moves"].append(version)
        self._write(data)

    def tag_rollback(self, version: str, reason: str) -> None:
        data = self._read()
        data["tags"][version] = reason
        self._write(data)

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {"champion": None, "tags": {}, "moves": []}

    def _write(self, data: dict[str, Any]) -> None:
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.path)


def tally(samples: list[dict[str, Any]], version: str, role: str) -> Any:
    """What Prometheus would count of ``samples`` for one version and role: requests, errors, the
    replicas' latency buckets (``LATENCY_BOUNDARIES_MS``) and the shared score bins."""
    from framework.rollout.evidence import Tally
    from framework.serving.metrics import LATENCY_BOUNDARIES_MS
    from framework.serving.score_bins import PROBABILITY_EDGES, count_bins
    from framework.serving.stats import sample_scores

    mine = [s for s in samples if s["role"] == role and str(s["version"]) == version]
    bounds = [*LATENCY_BOUNDARIES_MS, math.inf]
    latency = [float(s["latency_ms"]) for s in mine]
    bins = count_bins(PROBABILITY_EDGES, [v for s in mine if s.get("ok", True)
                                          for v in sample_scores(s)])
    return Tally(requests=len(mine), errors=sum(1 for s in mine if not s.get("ok", True)),
                 latency_buckets=tuple((b, sum(1 for v in latency if v <= b)) for b in bounds),
                 score_bins=tuple(bins.get(i, 0) for i in range(len(PROBABILITY_EDGES) - 1)))


class CountingSource:
    """The fake of ``PrometheusSource``: an EvidenceSource that keeps only what Prometheus keeps
    (counts per version and role, latency buckets, score bins) of a SampleSource's samples, and
    whose windows are complete ``lag_s`` after they end."""

    def __init__(self, samples: Any, lag_s: float = 0.0) -> None:
        self.samples, self.lag_s = samples, lag_s

    def evidence(self, start: float, end: float, candidate_version: str, stable_version: str,
                 role: str) -> Any:
        from framework.rollout.evidence import TallyEvidence

        window = self.samples.window(start, end)
        return TallyEvidence(tally(window, candidate_version, role),
                             tally(window, stable_version, "stable"), candidate_version, role,
                             source="counts")
