"""Ray Serve backend: deploys a recipe's prediction application and moves its traffic in place.

Importing this package imports no Ray: the SDK is imported inside the functions that use it.
"""

from framework.backends.ray_serve.backend import ServeBackend

__all__ = ["ServeBackend"]
