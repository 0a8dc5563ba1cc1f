"""Helpers for the Feast backend tests: a small recipe, a hand-made point-in-time table, apply-all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from framework.backends.base import RunContext
from framework.compile.compiler import compile_steps
from framework.spec import Recipe

FEAST_KINDS = ("feast.entity", "feast.view", "feast.service", "feast.materialize", "training.dataset")


def recipe_dict(features_path: str = "data/features.parquet",
                labels_path: str = "data/labels.parquet") -> dict[str, Any]:
    """A small valid recipe: a ``customer`` entity (int64 key), one view with two features over
    ``profiles``, and ``bought`` labels. Tests change the dict before validating it."""
    return {
        "schema_version": 1,
        "name": "shop",
        "data": {"sources": {
            "profiles": {"type": "parquet", "path": features_path, "timestamp_field": "event_timestamp"},
            "labels": {"type": "parquet", "path": labels_path, "timestamp_field": "event_timestamp"},
        }},
        "features": {
            "entities": {"customer": {"join_keys": ["customer_id"], "value_type": "int64"}},
            "views": {"profile": {"entities": ["customer"], "source": "profiles", "ttl_s": 0,
                                  "fields": {"spend": "float64", "visits": "int64"}}},
            "service": {"name": "shop_v1", "features": ["profile:spend", "profile:visits"]},
        },
        "training": {"label": {"source": "labels", "column": "bought"},
                     "model": {"type": "xgboost", "objective": "binary:logistic"}},
        "serving": {"auth": {"enabled": False}},
    }


# -- a hand-made table for point-in-time tests (see test_feast_point_in_time.py) ------------------

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


# customer 1: a value at day 5 corrected at day 7 (same event time, later created time)
# customer 2: a day-3 value that only arrived at day 9 (late)
# customer 3: one old value that the 10-day TTL expires
# customer 4: never seen (unknown entity)
FEATURES = [
    (1, day(0), day(0), 10.0, 1),
    (1, day(5), day(5), 20.0, 2),
    (1, day(5), day(7), 25.0, 3),
    (2, day(0), day(0), 100.0, 10),
    (2, day(3), day(9), 200.0, 20),
    (3, day(0), day(0), 7.0, 7),
]
LABELS = [  # (customer, label time, bought)
    (1, day(4), 0),
    (1, day(6), 1),
    (1, day(8), 0),
    (2, day(4), 1),
    (2, day(10), 0),
    (3, day(5), 1),
    (3, day(20), 0),
    (4, day(5), 1),
    (1, day(8), 1),  # the same (entity, time) again: both rows must come out
]


def write_tables(root: Path) -> None:
    """Write FEATURES (with a ``created`` column) and LABELS under ``root/data``."""
    (root / "data").mkdir(exist_ok=True)
    feats = pd.DataFrame(FEATURES, columns=["customer_id", "event_timestamp", "created", "spend", "visits"])
    feats.to_parquet(root / "data/features.parquet", index=False)
    labels = pd.DataFrame(LABELS, columns=["customer_id", "event_timestamp", "bought"])
    labels.to_parquet(root / "data/labels.parquet", index=False)


def feast_steps(recipe: Recipe, project_dir: Path) -> list:
    """The recipe's Feast and dataset steps, compiled with real source fingerprints."""
    from framework.backends.feast import fingerprint_sources

    steps = compile_steps(recipe, fingerprint_sources(recipe, project_dir))
    return [s for s in steps if s.kind in FEAST_KINDS]


def apply_all(backend: Any, recipe: Recipe, ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Apply every Feast step in plan order, as the executor does; returns outputs by address."""
    for step in feast_steps(recipe, ctx.project_dir):
        ctx.outputs[step.address] = backend.apply(step, ctx)
    return ctx.outputs


def compose_recipe(project: Path, name: str, overrides: list[str] | None = None) -> Recipe:
    """Compose ``recipes/<name>.yaml`` of ``project`` with Hydra, as `loom` does, and validate it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(project / "recipes"), version_base="1.3"):
        cfg = compose(name, overrides=[f"hydra.searchpath=[file://{project / 'conf'}]", *(overrides or [])])
    d = OmegaConf.to_container(cfg, resolve=False)
    for key in d.get("serving", {}).get("auth", {}).get("api_keys", []):
        key["key"] = {"env": "LOOM_API_KEY"}  # what loading does with ${oc.env:...} secrets
    return Recipe.model_validate(d)
