"""Scoring many independent instances at once (stream events): each as its own request would be.

``Predictor`` takes this in; it is kept apart because the request path (``Predictor.predict``)
answers one request with one pick of the traffic split, and events need one pick each.
"""

from __future__ import annotations

import time
from typing import Any

from framework.serving.encoding import check_features
from framework.serving.features import merge_row, require_complete
from framework.serving.problems import ApiError
from framework.serving.schemas import Instance
from framework.serving.slots import Slot


class EventScoring:
    """``predict_each`` for ``Predictor`` (it uses the predictor's lookup, slots and chain)."""

    async def predict_each(self, instances: list[Instance]) -> list[dict[str, Any] | ApiError]:
        """For events: one answer per instance, or the ``ApiError`` a request of it alone would get.

        Each instance picks its own slot of the traffic split, as separate requests do (a canary
        takes its share of events too), and one feature lookup serves them all. No answer cache:
        an event is scored when it happens.

        Raises:
            ApiError: 503 when no version is loaded yet (nothing can answer any of them).
        """
        started = time.perf_counter()
        out: list[Any] = [None] * len(instances)
        ok = []
        for i, inst in enumerate(instances):
            try:
                check_features(inst.features, self.names, self.types)
                self.entities.check(inst.entities)
                ok.append(i)
            except ApiError as exc:
                out[i] = exc
        table = self.slots
        if table.stable is None:
            raise ApiError(503, "No model version is loaded yet; retry shortly.")
        if not ok:
            return out
        try:
            looked, complete = await self._looked([instances[i] for i in ok])
        except ApiError:  # keys the store refused: find which, one by one
            return await self._each_alone(instances, ok, out)
        rows = [merge_row(looked[j], instances[i].features, self.names) for j, i in enumerate(ok)]
        groups: dict[str, list[int]] = {}
        picked: dict[str, Slot] = {}
        for j, i in enumerate(ok):
            if complete and self.args.serving.missing_features == "reject":
                try:
                    require_complete([rows[j]], [instances[i]], [looked[j]], self.names)
                except ApiError as exc:
                    out[i] = exc
                    continue
            role, slot = table.pick(self.rng)
            groups.setdefault(role, []).append(j)
            picked[role] = slot
        for role, members in groups.items():
            todo = [ok[j] for j in members]
            try:
                await self._answer(todo, [rows[j] for j in members], complete, role, picked[role],
                                   table, instances, out, started)
            except ApiError as exc:  # no level of the chain answered them
                for i in todo:
                    out[i] = exc
        return out

    async def _each_alone(self, instances: list[Instance], ok: list[int], out: list[Any]) -> list[Any]:
        for i in ok:
            try:
                (out[i],) = await self.predict([instances[i]])
            except ApiError as exc:
                out[i] = exc
        return out
