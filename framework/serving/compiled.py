"""A registered model compiled to native code (TL2cgen), behind the booster's ``inplace_predict``.

Replicas and ``loom optimize`` load the shared library the deploy step built
(``framework.backends.compiled``); scoring calls ``inplace_predict`` on whatever a slot holds, so a
compiled slot needs nothing else changed. The library is native code: Loom only loads one it built
itself from a registered UBJ and checked against XGBoost's predictions.
"""

from __future__ import annotations

from typing import Any

#: The name of a compiled library beside a version's UBJ (in the model cache and in MLflow, under
#: the version's run's ``loom/``).
LIB_FILE = "treelite-model.so"


class CompiledBooster:
    """``inplace_predict`` of a TL2cgen library, shaped like XGBoost's answer for the same rows.

    ``num_class``: the model's classes (multiclass: rows of probabilities); 1 otherwise.
    """

    def __init__(self, lib_path: str, num_features: int, num_class: int = 1) -> None:
        import contextlib
        import io

        import tl2cgen

        self.lib_path = lib_path
        # TL2cgen prints its native library's notes (its Treelite version) to stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            self._predictor = tl2cgen.Predictor(lib_path, nthread=1, verbose=False)
        self._dmatrix = tl2cgen.DMatrix
        self._features = num_features
        self._classes = num_class

    def inplace_predict(self, rows: Any) -> Any:
        import numpy as np

        x = np.ascontiguousarray(rows, dtype=np.float32)
        out = self._predictor.predict(self._dmatrix(x, missing=np.nan))
        # TL2cgen answers (rows, targets, classes); XGBoost (rows,) or (rows, classes).
        return out.reshape(x.shape[0], self._classes) if self._classes > 1 else out.reshape(-1)

    def num_features(self) -> int:
        return self._features

    def set_param(self, params: dict[str, Any]) -> None:
        """Nothing to set: the library runs one thread."""


def num_class(booster: Any) -> int:
    """The classes of an XGBoost booster's model (1 for binary and regression)."""
    import json

    config = json.loads(booster.save_config())
    return max(1, int(config["learner"]["learner_model_param"].get("num_class", "0") or 0))


def sha256_of(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_compiled(lib_path: str, booster: Any, sha256: str | None = None) -> CompiledBooster:
    """The library at ``lib_path``, shaped like ``booster``'s answers.

    Raises:
        ValueError: ``sha256`` is given and the file's differs: it is not the library the deploy
            step checked, and native code is not loaded on trust.
    """
    if sha256 is not None and sha256_of(lib_path) != sha256:
        raise ValueError(f"{lib_path} is not the compiled model the deploy step checked (sha256 "
                         "differs); it is not loaded. Deploy again to rebuild it.")
    return CompiledBooster(str(lib_path), booster.num_features(), num_class(booster))
