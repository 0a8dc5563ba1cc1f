"""Helpers for training tests: compose a recipe, build the churn training parquet, run steps."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[3]


def compose_recipe_dict(name: str = "churn", overrides: list[str] | None = None) -> dict[str, Any]:
    """The repository's recipe composed with Hydra, as a plain dict (API key made an env reference)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        cfg = compose(name, overrides=[f"hydra.searchpath=[file://{ROOT / 'conf'}]", *(overrides or [])])
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("hydra", None)
    keys = data.get("serving", {}).get("auth", {}).get("api_keys") or []
    if keys:
        keys[0]["key"] = {"env": "LOOM_API_KEY"}
    return data


def churn_dataset(data_dir: Path, out: Path, rows: int | None = None) -> Path:
    """What the feature store's ``training.dataset`` step writes for churn: last snapshot + label."""
    feats = pd.read_parquet(data_dir / "churn" / "features.parquet")
    labels = pd.read_parquet(data_dir / "churn" / "labels.parquet")
    last = feats.sort_values("event_timestamp").groupby("customer_id").tail(1)
    last = last.drop(columns=["event_timestamp", "created"])
    frame = labels.merge(last, on="customer_id", how="inner")
    cols = ["customer_id", "event_timestamp", "churned", "tenure_months", "monthly_charges",
            "contract_months", "support_calls", "payment_delay_days"]
    frame = frame[cols].head(rows) if rows else frame[cols]
    frame.to_parquet(out, index=False)
    return out


def with_training(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of a recipe dict with ``training.<section>`` keys replaced (e.g. scaling={...})."""
    data = copy.deepcopy(data)
    for key, value in changes.items():
        data["training"][key] = value
    return data


def steps_of(ctx: Any, data_fps: dict[str, str] | None = None) -> dict[str, Any]:
    """The compiled steps of the context's recipe, by address."""
    from framework.compile.compiler import compile_steps

    return {s.address: s for s in compile_steps(ctx.recipe, data_fps or {})}


def run_steps(ctx: Any, steps: dict[str, Any], addresses: list[str]) -> dict[str, Any]:
    """Apply ``addresses`` in order with the real backends, recording outputs like the executor."""
    from framework.backends.model_registry import MlflowRegistryBackend
    from framework.backends.ray_train import RayTrainBackend

    backends = {}  # as framework/execute/backends.py maps kinds to classes
    for backend in (RayTrainBackend(), MlflowRegistryBackend()):
        backends.update({kind: backend for kind in backend.kinds})
    for address in addresses:
        step = steps[address]
        ctx.outputs[address] = backends[step.kind].apply(step, ctx)
    return ctx.outputs
