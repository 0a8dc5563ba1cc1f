"""A model version's contract: its task, output labels and input features, which it keeps for life.

The contract travels with the version: training writes it (with the category sets it froze) next
to the booster and into the MLflow run, the registry tags the version with its summary, the serving
slot carries it, and a replica answers each version in that version's own contract. The plan
compares the recipe's contract with the one serving as stable: a different task or feature list
under the same model id is refused unless the recipe starts a new major contract
(``registry.contract``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from framework.spec import Recipe

#: Feature value types that are categorical (string categories, coded 0..k-1 for XGBoost).
CATEGORICAL = ("string",)
#: The contract's file beside a version's booster (``model.ubj``) and in its MLflow run (``loom/``).
CONTRACT_FILE = "contract.json"
#: Most categories one feature may have (XGBoost handles more, but a larger set is an id column).
MAX_CATEGORIES = 10_000


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContractFeature(_Doc):
    """One model input: its name, value type and, for a categorical one, the frozen category set."""

    name: str
    type: str
    categories: list[str] | None = Field(
        default=None, description="Categories seen in training, in code order (categorical only).")

    @property
    def categorical(self) -> bool:
        """Whether the feature is a categorical (string) feature."""
        return self.type in CATEGORICAL


class ContractLabels(_Doc):
    """How a binary version names its answers."""

    threshold: float = 0.5
    positive: str = "1"
    negative: str = "0"


class Contract(_Doc):
    """What a model version takes and answers."""

    major: int = Field(default=1, ge=1)
    task: Literal["binary", "multiclass", "regression"]
    num_class: int | None = None
    features: list[ContractFeature] = Field(min_length=1)
    labels: ContractLabels | None = None

    @property
    def names(self) -> list[str]:
        """Input feature names, in model order."""
        return [f.name for f in self.features]

    def shape(self) -> dict[str, Any]:
        """What must not change within a major contract: the task and the typed feature list."""
        return {"task": self.task, "num_class": self.num_class,
                "features": [[f.name, f.type] for f in self.features]}

    def with_categories(self, categories: dict[str, list[str]]) -> "Contract":
        """This contract with the category sets frozen at training."""
        features = [f.model_copy(update={"categories": categories.get(f.name)}) if f.categorical
                    else f for f in self.features]
        return self.model_copy(update={"features": features})

    def to_json(self) -> str:
        """Compact, deterministic JSON (what ``contract.json`` and the MLflow run hold)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def feature_types(recipe: "Recipe") -> dict[str, str]:
    """Model input name -> declared value type, in model order."""
    views = recipe.features.views
    return {feat: views[view].fields.get(feat, "float64") if view in views else "float64"
            for view, feat in recipe.feature_refs()}


def categorical_features(recipe: "Recipe") -> list[str]:
    """The recipe's categorical (string) model inputs, in model order."""
    return [name for name, kind in feature_types(recipe).items() if kind in CATEGORICAL]


def recipe_contract(recipe: "Recipe") -> Contract:
    """The contract the recipe's model will have (categories come from training)."""
    labels = recipe.serving.labels
    return Contract(
        major=recipe.registry.contract, task=recipe.task,
        num_class=recipe.training.model.num_class if recipe.task == "multiclass" else None,
        features=[ContractFeature(name=n, type=t) for n, t in feature_types(recipe).items()],
        labels=ContractLabels(**labels.model_dump()) if labels is not None and recipe.task == "binary"
        else None,
    )


def parse(doc: Any) -> Contract | None:
    """A contract from its JSON text or dict; None for nothing (versions from before contracts)."""
    if doc is None or doc == "":
        return None
    if isinstance(doc, Contract):
        return doc
    return Contract.model_validate(json.loads(doc) if isinstance(doc, str) else doc)


def differences(serving: Contract, recipe: Contract) -> list[str]:
    """How the recipe's contract breaks the serving one's shape (empty when compatible)."""
    out = []
    if serving.task != recipe.task:
        out.append(f"task {serving.task} -> {recipe.task}")
    elif serving.num_class != recipe.num_class:
        out.append(f"num_class {serving.num_class} -> {recipe.num_class}")
    old, new = dict(serving.shape()["features"]), dict(recipe.shape()["features"])
    gone = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    retyped = [f"{n} {old[n]} -> {new[n]}" for n in new if n in old and old[n] != new[n]]
    if gone:
        out.append(f"features removed: {', '.join(gone)}")
    if added:
        out.append(f"features added: {', '.join(added)}")
    if retyped:
        out.append(f"feature types changed: {', '.join(retyped)}")
    if not (gone or added or retyped) and list(old) != list(new):
        out.append("feature order changed")
    return out
