"""Ray Tune backend: the ``training.tune`` step as a sweep (Hydra sweep syntax is parsed in loading/).

Importing this package imports no Ray or XGBoost: ``_core`` is loaded inside ``apply``.
"""

from framework.backends.ray_tune.backend import RayTuneBackend

__all__ = ["RayTuneBackend"]
