"""MLflow model registry backend: quality gates, registration with lineage, aliases, and model resolution.

Importing this package imports no MLflow: the SDK is loaded inside the functions that use it.
"""

from framework.backends.model_registry.backend import MlflowRegistryBackend
from framework.backends.model_registry.versions import list_versions, promote, resolve_model, show_version

__all__ = ["MlflowRegistryBackend", "list_versions", "promote", "resolve_model", "show_version"]
