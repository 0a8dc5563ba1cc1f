"""Engine adapters: the only layer that imports feast, ray, mlflow and xgboost (always lazily)."""
