"""Ray Train backend: the ``training.train`` step as a Ray Train V2 XGBoost job.

Importing this package imports no Ray or XGBoost: ``_core`` is loaded inside ``apply``.
"""

from framework.backends.ray_train.backend import RayTrainBackend

__all__ = ["RayTrainBackend"]
