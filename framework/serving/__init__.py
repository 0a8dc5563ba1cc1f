"""Code that runs inside Ray Serve replicas: the prediction API and everything on its hot path."""
