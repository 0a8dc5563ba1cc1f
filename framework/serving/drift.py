"""Model and data monitoring in a replica: live features and scores in the training profile's bins.

Each answered row (``monitoring.drift.sample_rate`` of them) is counted, per version, into the bins
of that version's reference profile (logged at training, loaded beside its booster): a bin per
feature value, a miss when the value is absent, an out-of-range when it lies outside what training
saw, and a bin for the score. The request path only adds to plain lists; a thread flushes every
``FLUSH_S`` seconds: the new counts go to the Prometheus counters, and each replica's PSI over its
last ``window_s`` is set on the ``*_psi`` gauges once the window holds ``min_rows`` rows (NaN
before, which no alert reads as drift).
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from framework.backends.model_registry.profile import bin_of, psi

FLUSH_S = 5.0
logger = logging.getLogger("loom.serving")


class VersionBins:
    """The running counts of one version, in the bins of its reference profile."""

    def __init__(self, profile: dict[str, Any], names: Sequence[str]) -> None:
        features = profile.get("features", {})
        hists = [features.get(n) or {} for n in names]
        self.names = list(names)
        # A feature training never saw a finite value of has no bins: only its misses are counted.
        self.edges = [h.get("edges") if len(h.get("edges") or []) >= 2 else None for h in hists]
        self.reference = [list(h.get("counts") or []) for h in hists]
        score = profile.get("prediction") or {}
        self.score_edges = score.get("edges") if len(score.get("edges") or []) >= 2 else None
        self.score_reference = list(score.get("counts") or [])
        self.bins = [[0] * (len(e) - 1) if e else [] for e in self.edges]
        self.missing = [0] * len(self.names)
        self.out_of_range = [0] * len(self.names)
        self.score_bins = [0] * (len(self.score_edges) - 1) if self.score_edges else []
        self.rows = 0

    def add(self, vector: Sequence[float], score: float | None) -> None:
        """Count one row as the model read it (NaN: missing) and its score."""
        self.rows += 1
        for i, value in enumerate(vector):
            if value is None or value != value:  # NaN
                self.missing[i] += 1
                continue
            edges = self.edges[i]
            if edges is not None:
                b, outside = bin_of(edges, value)
                self.bins[i][b] += 1
                if outside:
                    self.out_of_range[i] += 1
        if score is not None and self.score_edges is not None and score == score:
            self.score_bins[bin_of(self.score_edges, score)[0]] += 1

    def snapshot(self) -> tuple:
        """The counts now, as a tuple of copies (the flush thread diffs two of them)."""
        return (self.rows, [list(b) for b in self.bins], list(self.missing), list(self.out_of_range),
                list(self.score_bins))


def _minus(a: tuple, b: tuple | None) -> tuple:
    if b is None:
        return a
    return (a[0] - b[0], [[x - y for x, y in zip(p, q)] for p, q in zip(a[1], b[1])],
            [x - y for x, y in zip(a[2], b[2])], [x - y for x, y in zip(a[3], b[3])],
            [x - y for x, y in zip(a[4], b[4])])


def _plus(a: tuple, b: tuple) -> tuple:
    return (a[0] + b[0], [[x + y for x, y in zip(p, q)] for p, q in zip(a[1], b[1])],
            [x + y for x, y in zip(a[2], b[2])], [x + y for x, y in zip(a[3], b[3])],
            [x + y for x, y in zip(a[4], b[4])])


class DriftMonitor:
    """Counts per version (``observe`` on the request path), flushed to metrics by a thread."""

    def __init__(self, names: Sequence[str], settings: dict[str, Any], metrics: Any,
                 seed: int | None = None, start: bool = True,
                 on_flush: Callable[[], None] | None = None) -> None:
        self.names = list(names)
        self.sample_rate = float(settings.get("sample_rate", 1.0))
        self.window_s = float(settings.get("window_s", 600.0))
        self.min_rows = int(settings.get("min_rows", 100))
        self.metrics = metrics
        self._on_flush = on_flush  # more to export on the same beat (the lookup's freshness)
        self._rng = random.Random(seed)
        self._versions: dict[str, VersionBins] = {}
        self._flushed: dict[str, tuple] = {}
        self._windows: dict[str, deque] = {}
        self._lock = threading.Lock()  # flushes only: the request path never takes it
        self._stop = threading.Event()
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._run, name="loom-drift", daemon=True)
            self._thread.start()

    def load(self, version: str, profile_path: str | None, names: Sequence[str] | None = None) -> None:
        """Bins for ``version`` from its profile file; a version without one is not binned.

        ``names``: the version's own features in the order its vectors hold them (its contract's;
        default the app's): versions of different contracts are served side by side."""
        if version in self._versions or not profile_path:
            return
        try:
            with open(profile_path, encoding="utf-8") as f:
                self._versions[version] = VersionBins(json.load(f), names or self.names)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("monitoring.drift: version %s is not binned: its reference profile %s "
                           "could not be read (%s)", version, profile_path, exc)

    def keep(self, versions: set[str]) -> None:
        """Forget versions no longer served (after a last flush of what they counted)."""
        gone = [v for v in self._versions if v not in versions]
        if gone:
            self.flush()
            with self._lock:
                for v in gone:
                    self._versions.pop(v, None)
                    self._flushed.pop(v, None)
                    self._windows.pop(v, None)

    def observe(self, version: str, vectors: Sequence[Sequence[float]],
                scores: Sequence[float | None]) -> None:
        """Count the rows one model call answered (hot path: a sampling draw and list adds)."""
        bins = self._versions.get(version)
        if bins is None or (self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate):
            return
        for vector, score in zip(vectors, scores):
            if len(vector) == len(bins.names):  # never another contract's row
                bins.add(vector, score)

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - monitoring never takes a replica down
                logger.exception("monitoring.drift: flush failed")

    def flush(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Push new counts to the counters and set the window's PSI; returns the PSI per version."""
        now = time.time() if now is None else now
        out = {}
        with self._lock:
            for version, bins in list(self._versions.items()):
                snap = bins.snapshot()
                delta = _minus(snap, self._flushed.get(version))
                self._flushed[version] = snap
                self._export(version, delta)
                window = self._windows.setdefault(version, deque())
                window.append((now, delta))
                while window and window[0][0] <= now - self.window_s:
                    window.popleft()
                out[version] = self._psi(version, bins, window)
        if self._on_flush is not None:
            self._on_flush()
        return out

    def _export(self, version: str, delta: tuple) -> None:
        rows, bins, missing, outside, score_bins = delta
        m = self.metrics
        if rows:
            m.monitored_rows(version, rows)
        for name, counts, miss, out in zip(self._versions[version].names, bins, missing, outside):
            for b, n in enumerate(counts):
                if n:
                    m.feature_bin(version, name, b, n)
            if miss:
                m.feature_missing(version, name, miss)
            if out:
                m.feature_out_of_range(version, name, out)
        for b, n in enumerate(score_bins):
            if n:
                m.score_bin(version, b, n)

    def _psi(self, version: str, bins: VersionBins, window: deque) -> dict[str, Any]:
        total = window[0][1]
        for _, delta in list(window)[1:]:
            total = _plus(total, delta)
        rows = total[0]
        enough = rows >= self.min_rows
        features = {}
        for i, name in enumerate(bins.names):
            value = psi(bins.reference[i], total[1][i]) if enough and bins.edges[i] else None
            features[name] = value
            self.metrics.feature_psi(version, name, math.nan if value is None else value)
        score = psi(bins.score_reference, total[4]) if enough and bins.score_edges else None
        self.metrics.score_psi(version, math.nan if score is None else score)
        return {"rows": rows, "features": features, "score": score}

    def close(self) -> None:
        """Stop the thread after a last flush."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=FLUSH_S)
        self.flush()
