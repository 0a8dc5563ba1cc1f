"""Online feature lookup for serving: one Feast call per batch, the feature service resolved once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.errors import BackendError


class OnlineFeatureClient:
    """Reads the model's features for a batch of entity rows from the online store.

    Built from plain, picklable arguments (``from_workspace``) because Ray Serve replicas construct
    it; pickling a client pickles those arguments, and unpickling opens the store again.
    """

    def __init__(self, store: Any, service: Any, feature_names: list[str], repo_dir: str) -> None:
        self._store = store
        self._service = service
        self.feature_names = list(feature_names)
        self.repo_dir = repo_dir

    @classmethod
    def from_workspace(cls, repo_dir: str, service_name: str,
                       feature_names: list[str]) -> "OnlineFeatureClient":
        """Open the Feast repo at ``repo_dir`` and resolve the feature service once.

        Args:
            repo_dir: the generated feature repo with its ``feature_store.yaml``:
                ``<workspace>/feast/<project>`` (``framework.backends.feast.repo.repo_dir``).
            service_name: the model's feature service (``features.service.name``).
            feature_names: the model's input columns, in order (``Recipe.feature_names()``).

        Raises:
            BackendError: the repo or the service is missing (run ``loom launch`` first).
        """
        from feast import FeatureStore

        if not (Path(repo_dir) / "feature_store.yaml").is_file():
            raise BackendError(f"No Feast repo at {repo_dir}: run `loom launch` for this recipe first.")
        try:
            store = FeatureStore(repo_path=str(repo_dir))
            service = store.get_feature_service(service_name, allow_cache=False)
        except Exception as exc:  # noqa: BLE001 - Feast raises many types here
            raise BackendError(
                f"features.service.name: feature service '{service_name}' is not in the Feast registry "
                f"at {repo_dir} ({exc}). Run `loom launch` for this recipe first."
            ) from exc
        return cls(store, service, feature_names, str(repo_dir))

    def __reduce__(self) -> tuple[Any, ...]:
        return (OnlineFeatureClient.from_workspace,
                (self.repo_dir, self._service.name, self.feature_names))

    def get(self, entity_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Feature values for each entity row, in order; a missing value is None.

        Args:
            entity_rows: one dict of join key → value per entity, e.g. ``[{"customer_id": "C000042"}]``.

        Returns:
            One dict of feature name → value (or None) per entity row, in the same order.
        """
        if not entity_rows:
            return []
        columns = self._store.get_online_features(
            features=self._service, entity_rows=entity_rows).to_dict()
        names = self.feature_names
        return [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]
