"""The training dataset: read the feature store's parquet, check it, split it train/validation/test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from framework.spec import Recipe

TIME_COLUMN = "event_timestamp"


@dataclass
class Splits:
    """Feature matrices (float32) and labels of the three splits, with the model's feature schema."""

    feature_names: list[str]
    feature_types: dict[str, str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def xgb_types(self) -> list[str]:
        """XGBoost ``feature_types``: ``c`` for a categorical feature (codes 0..k-1), ``q`` otherwise."""
        return ["c" if n in self.categories else "q" for n in self.feature_names]

    @property
    def rows(self) -> dict[str, int]:
        """Rows per split, for outputs and progress lines."""
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


def load_splits(path: str | Path, recipe: "Recipe") -> Splits:
    """Read the training parquet at ``path`` and split it as ``training.split`` says.

    Raises:
        DataError: the file is missing or unreadable, or lacks the label, time or feature columns.
    """
    frame = read_dataset(path, recipe)
    return split_frame(frame, recipe)


def read_dataset(path: str | Path, recipe: "Recipe") -> "pd.DataFrame":
    """The dataset as a DataFrame, checked for the columns the recipe needs."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: training dataset not found. It is written by the 'training.dataset' step; "
            f"run `loom launch recipe={recipe.name}` (or `loom train recipe={recipe.name}`) so that "
            "step runs first."
        )
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: cannot read the training dataset as parquet ({exc}).") from exc
    _check_columns(frame, path, recipe)
    return frame


def _check_columns(frame: "pd.DataFrame", path: Path, recipe: "Recipe") -> None:
    label = recipe.training.label.column
    needed = [label, *recipe.feature_names()]
    if recipe.training.split.type == "time":
        needed.append(TIME_COLUMN)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: the training dataset lacks column(s) {missing} "
            f"(training.label.column / features.service.features). Found: {list(frame.columns)}."
        )
    if frame[label].isna().any():
        raise DataError(
            f"{path}: label column '{label}' (training.label.column) has "
            f"{int(frame[label].isna().sum())} empty value(s); every training row needs a label."
        )
    if len(frame) < 10:
        raise DataError(f"{path}: only {len(frame)} training rows; Loom needs at least 10 to split.")


def split_frame(frame: "pd.DataFrame", recipe: "Recipe") -> Splits:
    """Split rows into train/validation/test: seeded random, or by label time (newest rows test)."""
    split = recipe.training.split
    n = len(frame)
    n_test = max(1, int(round(n * split.test_fraction)))
    n_val = max(1, int(round(n * split.validation_fraction)))
    if n_test + n_val >= n:
        raise DataError(
            f"training.split: {n} rows leave no training rows with validation_fraction="
            f"{split.validation_fraction} and test_fraction={split.test_fraction}; lower them."
        )
    if split.type == "time":
        # Stable sort keeps rows with equal times in file order, so the split is reproducible.
        order = np.argsort(frame[TIME_COLUMN].to_numpy(), kind="stable")
        train_idx, val_idx, test_idx = np.split(order, [n - n_test - n_val, n - n_test])
    else:
        order = np.random.default_rng(split.seed).permutation(n)
        test_idx, val_idx, train_idx = np.split(order, [n_test, n_test + n_val])
    return _to_splits(frame, recipe, train_idx, val_idx, test_idx)


def _to_splits(frame: "pd.DataFrame", recipe: "Recipe", *parts: np.ndarray) -> Splits:
    from framework.compile.contract import categorical_features

    names = recipe.feature_names()
    train, val, test = parts
    categories = {n: frozen_categories(frame[n].to_numpy()[train], n)
                  for n in categorical_features(recipe)}
    x = feature_matrix(frame, names, categories)
    y = _labels(frame, recipe)
    return Splits(
        feature_names=names,
        feature_types={c: str(frame[c].dtype) for c in names},
        x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val], x_test=x[test], y_test=y[test],
        categories=categories,
    )


def frozen_categories(values: np.ndarray, name: str) -> list[str]:
    """The category set of a string feature, as training sees it (sorted; nulls are missing).

    Raises:
        DataError: more categories than ``MAX_CATEGORIES`` (an id column, not a category).
    """
    from framework.compile.contract import MAX_CATEGORIES

    seen = sorted({str(v) for v in values if v is not None and v == v})
    if len(seen) > MAX_CATEGORIES:
        raise DataError(
            f"feature '{name}' (a string field, so categorical) has {len(seen):,} distinct values "
            f"in the training rows; Loom takes at most {MAX_CATEGORIES:,} categories. Drop it from "
            "features.service.features, or encode it numerically in the source."
        )
    return seen


def feature_matrix(frame: "pd.DataFrame", names: list[str],
                   categories: dict[str, list[str]]) -> np.ndarray:
    """The float32 model input: numbers as they are, categories as their codes; unseen or null: NaN.

    Raises:
        DataError: a numeric feature holds values that are not numbers.
    """
    import pandas as pd

    x = np.empty((len(frame), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = frame[name]
        if name in categories:
            values = column.astype("string") if column.dtype != object else column
            codes = pd.Categorical(values, categories=categories[name]).codes.astype(np.float32)
            codes[codes < 0] = np.nan  # null, or a category this version never saw
            x[:, j] = codes
            continue
        try:
            x[:, j] = column.to_numpy(dtype=np.float32, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"feature '{name}' is declared numeric in features.views but holds "
                f"{column.dtype} values ({exc}); declare it 'string' to make it categorical, "
                "or fix the source column."
            ) from exc
    return x


def _labels(frame: "pd.DataFrame", recipe: "Recipe") -> np.ndarray:
    column = recipe.training.label.column
    values = frame[column]
    if values.dtype.kind not in "biuf":
        raise DataError(
            f"label column '{column}' (training.label.column) has type {values.dtype}; "
            "Loom trains on numeric labels (0/1 for binary, 0..k-1 for multiclass)."
        )
    y = values.to_numpy(dtype=np.float32)
    if recipe.task == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"label column '{column}': a binary:logistic model needs labels 0 or 1.")
    if recipe.task == "multiclass":
        k = recipe.training.model.num_class or 0
        if not (np.isin(y, np.arange(k)).all()):
            raise DataError(
                f"label column '{column}': multi:softprob with num_class={k} needs labels 0..{k - 1}."
            )
    return y
