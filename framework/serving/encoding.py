"""A version's input and output in its own contract: feature order, category codes, labels.

Each loaded version has a ``VersionCodec``: it turns a feature row (numbers, and strings for
categorical features) into the version's XGBoost input, with the category codes frozen when the
version was trained (an unseen category is a missing value, and counted), and its raw output into
an answer with the version's task and labels. A version registered before contracts existed uses
the app's feature list, task and labels.
"""

from __future__ import annotations

from typing import Any, Callable

from framework.compile.contract import CATEGORICAL, Contract
from framework.serving.features import check_request_features
from framework.serving.problems import ApiError
from framework.serving.scoring import Labeler

NAN = float("nan")
#: Longest category string a request may send (``schemas.Category`` enforces it too).
MAX_CATEGORY_CHARS = 256


class VersionCodec:
    """Encodes rows for one version and labels its outputs."""

    def __init__(self, contract: Contract | None, names: list[str], task: str, labels: Any) -> None:
        self.contract = contract
        self.major = contract.major if contract is not None else None
        if contract is None:
            self.names, self.labeler, self.codes = list(names), Labeler(task, labels), {}
            return
        self.names = contract.names
        self.labeler = Labeler(contract.task, contract.labels)
        self.codes = {f.name: {c: float(i) for i, c in enumerate(f.categories or [])}
                      for f in contract.features if f.categorical}

    def vector(self, row: dict[str, Any], unseen: Callable[[str], None]) -> list[float]:
        """The version's input row in its feature order; missing values and unseen categories NaN.

        ``unseen(feature)`` is called for each category this version never saw in training.
        """
        codes = self.codes
        if not codes:  # the usual model: numbers only
            return [NAN if (v := row.get(n)) is None or v.__class__ is str else float(v)
                    for n in self.names]
        out = []
        for name in self.names:
            value = row.get(name)
            if value is None:
                out.append(NAN)
            elif name in codes:
                code = codes[name].get(str(value) if not isinstance(value, str) else value)
                if code is None:
                    unseen(name)
                    out.append(NAN)
                else:
                    out.append(code)
            elif isinstance(value, str):  # a category sent for a numeric feature of this version
                out.append(NAN)
            else:
                out.append(float(value))
        return out


def check_features(features: dict[str, Any], names: list[str], types: dict[str, str]) -> None:
    """422 for unknown features, a non-string category or a non-number for a numeric feature."""
    categorical = {n for n, t in types.items() if t in CATEGORICAL}
    if not categorical:
        check_request_features(features, names)
        return
    check_request_features({k: v for k, v in features.items() if k not in categorical}, names)
    bad = [n for n, v in features.items() if n in categorical and v is not None
           and not (isinstance(v, str) and len(v) <= MAX_CATEGORY_CHARS)]
    if bad:
        raise ApiError(422, f"Categorical features take a string (at most {MAX_CATEGORY_CHARS} "
                            f"characters): {', '.join(sorted(bad))}.",
                       [{"field": f"features.{n}", "message": "not a category string"} for n in bad])
