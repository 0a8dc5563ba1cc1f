"""Online feature lookup for serving: one Feast call per batch, the feature service resolved once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from framework.errors import BackendError


class OnlineFeatureClient:
    """Reads the model's features for a batch of entity rows from the online store.

    Built from plain, picklable arguments (``from_workspace``) because Ray Serve replicas construct
    it; pickling a client pickles those arguments, and unpickling opens the store again.
    """

    def __init__(self, store: Any, service: Any, feature_names: list[str], repo_dir: str,
                 ttl_s: dict[str, int] | None = None, config: dict[str, Any] | None = None) -> None:
        self._store = store
        self._service = service
        self.feature_names = list(feature_names)
        self.repo_dir = repo_dir
        self._ttl_arg = ttl_s
        self._config = config
        self._expiring = _expiring_features(store, service, ttl_s)
        self.expired = 0
        """Values read older than their view's TTL, and so returned as None, since construction."""
        # One feature per view: Feast stamps every feature of a view's row with its event time.
        self._stamped = [(proj.name, proj.features[0].name)
                         for proj in service.feature_view_projections if proj.features]
        self._ages: dict[str, list[float]] = {}  # view -> [values read, sum of ages, max age]

    @classmethod
    def from_workspace(cls, repo_dir: str, service_name: str, feature_names: list[str],
                       ttl_s: dict[str, int] | None = None,
                       config: dict[str, Any] | None = None) -> "OnlineFeatureClient":
        """Open the Feast repo at ``repo_dir`` and resolve the feature service (and view TTLs) once.

        Args:
            repo_dir: the generated feature repo with its ``feature_store.yaml``:
                ``<workspace>/feast/<project>`` (``framework.backends.feast.repo.repo_dir``).
            service_name: the model's feature service (``features.service.name``).
            feature_names: the model's input columns, in order (``Recipe.feature_names()``).
            ttl_s: view name -> ``ttl_s`` (0 = forever); read from the Feast registry when None.
            config: the ``feature_store.yaml`` content itself (``repo.inline_config``), for a node
                that cannot read ``repo_dir``: a SQL registry and a Redis online store; ``${VAR}``
                in it is expanded from this process's environment, as Feast does for the file.

        Raises:
            BackendError: the repo or the service is missing (run ``loom launch recipe=NAME`` first).
        """
        from feast import FeatureStore

        if config is None and not (Path(repo_dir) / "feature_store.yaml").is_file():
            raise BackendError(f"No Feast repo at {repo_dir}: run `loom launch recipe=NAME` for this "
                               "recipe first.")
        try:
            store = FeatureStore(repo_path=str(repo_dir)) if config is None else \
                FeatureStore(config=_repo_config(config))
            service = store.get_feature_service(service_name, allow_cache=False)
        except Exception as exc:  # noqa: BLE001 - Feast raises many types here
            raise BackendError(
                f"features.service.name: feature service '{service_name}' is not in the Feast registry "
                f"at {repo_dir} ({exc}). Run `loom launch recipe=NAME` for this recipe first."
            ) from exc
        return cls(store, service, feature_names, str(repo_dir), ttl_s, config)

    def __reduce__(self) -> tuple[Any, ...]:
        return (OnlineFeatureClient.from_workspace,
                (self.repo_dir, self._service.name, self.feature_names, self._ttl_arg, self._config))

    def get(self, entity_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Feature values for each entity row, in order; a missing value is None.

        Args:
            entity_rows: one dict of join key → value per entity, e.g. ``[{"customer_id": "C000042"}]``.

        Returns:
            One dict of feature name → value (or None) per entity row, in the same order. A value
            older than its view's ``ttl_s`` is None, as the spec says (Feast serves it regardless).
        """
        if not entity_rows:
            return []
        try:
            response = self._store.get_online_features(features=self._service, entity_rows=entity_rows)
        except (TypeError, OverflowError) as exc:
            # Feast could not serialize the keys: the request's input, not a store failure.
            from framework.serving.features import EntityKeyError

            raise EntityKeyError(f"The entity keys cannot be looked up: {exc}"[:300]) from exc
        columns = response.to_dict()
        now = time.time()
        if self._expiring:
            self.expired += _drop_expired(response.proto, columns, self._expiring, now)
        _count_ages(response.proto, self._stamped, self._ages, now)
        names = self.feature_names
        return [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]


    def take_ages(self) -> dict[str, tuple[int, float, float]]:
        """Per view, ``(values read, mean age s, max age s)`` of the values read since the last
        call (freshness: how old the served value was); views read nothing are left out."""
        ages, self._ages = self._ages, {}
        return {view: (int(n), total / n, top) for view, (n, total, top) in ages.items() if n}


def _repo_config(config: dict[str, Any]) -> Any:
    import json
    import os

    from feast.repo_config import RepoConfig

    return RepoConfig(**json.loads(os.path.expandvars(json.dumps(config))))


def _count_ages(proto: Any, stamped: list[tuple[str, str]], ages: dict[str, list[float]],
                now: float) -> None:
    """Add each found row's age (now - its event time) to ``ages``; a missing row has a zero stamp."""
    refs = list(proto.metadata.feature_names.val)
    for view, feature in stamped:
        if feature not in refs:
            continue
        acc = ages.setdefault(view, [0, 0.0, 0.0])
        for ts in proto.results[refs.index(feature)].event_timestamps:
            if ts.seconds > 0:
                age = max(0.0, now - ts.seconds - getattr(ts, "nanos", 0) / 1e9)
                acc[0] += 1
                acc[1] += age
                if age > acc[2]:
                    acc[2] = age


def _expiring_features(store: Any, service: Any, ttl_s: dict[str, int] | None) -> list[tuple[int, list[str]]]:
    """``(ttl seconds, feature names)`` of each of the service's views with a TTL, read once.

    Raises:
        BackendError: a view of the service is not in the registry.
    """
    out = []
    for proj in service.feature_view_projections:
        if ttl_s is not None:
            seconds = int(ttl_s.get(proj.name, 0))
        else:
            try:
                ttl = store.get_feature_view(proj.name, allow_registry_cache=False).ttl
            except Exception as exc:  # noqa: BLE001 - Feast raises many types here
                raise BackendError(f"features.views.{proj.name}: not in the Feast registry ({exc}). "
                                   "Run `loom launch recipe=NAME` for this recipe first.") from exc
            seconds = int(ttl.total_seconds()) if ttl else 0
        if seconds > 0 and proj.features:
            out.append((seconds, [f.name for f in proj.features]))
    return out


def _drop_expired(proto: Any, columns: dict[str, list], expiring: list[tuple[int, list[str]]],
                  now: float) -> int:
    """Set values older than their view's TTL to None in ``columns``; the number of values dropped.

    Feast stamps every feature of a view with the row's event time, so one feature per view is read.
    An entity without a row has a zero stamp and None values: nothing to drop. Whole seconds, so a
    value expires at most a second late (never early), like the offline join's ``ts + ttl >= t``.
    """
    refs = list(proto.metadata.feature_names.val)
    dropped = 0
    for seconds, names in expiring:
        oldest = int(now) - seconds
        stamps = proto.results[refs.index(names[0])].event_timestamps
        for j, ts in enumerate(stamps):
            if ts.seconds < oldest:
                for n in names:
                    if columns[n][j] is not None:
                        columns[n][j] = None
                        dropped += 1
    return dropped
