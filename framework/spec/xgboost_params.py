"""XGBoost booster parameters Loom knows: each typed and range-checked, so a typo fails at validate."""

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError, WithJsonSchema, WrapValidator
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs typing_extensions' TypedDict before 3.12

#: XGBoost's evaluation metrics; ``error@0.6``, ``ndcg@5`` and ``ndcg-`` style suffixes are allowed.
EVAL_METRICS = (
    "rmse", "rmsle", "mae", "mape", "mphe", "logloss", "error", "merror", "mlogloss", "auc",
    "aucpr", "pre", "ndcg", "map", "poisson-nloglik", "gamma-nloglik", "cox-nloglik",
    "gamma-deviance", "tweedie-nloglik", "aft-nloglik", "interval-regression-accuracy",
)


def _check_metric(name: str) -> None:
    base = name.split("@", 1)[0].rstrip("-")
    if base not in EVAL_METRICS:
        import difflib  # error path only

        close = difflib.get_close_matches(base, EVAL_METRICS, n=1)
        raise ValueError(f"'{name}' is not an XGBoost eval_metric. "
                         + (f"Did you mean '{close[0]}'?" if close else f"Known: {', '.join(EVAL_METRICS)}"))


def _check_metrics(value: Any) -> Any:
    """One XGBoost metric or a list of them, kept as written (early stopping watches the last)."""
    names = [value] if isinstance(value, str) else value
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError("eval_metric is a metric name or a list of them, e.g. [logloss, auc]")
    for name in names:
        _check_metric(name)
    return value


def _number(value: Any, handler: Any) -> Any:
    """Numbers as written (an int stays an int, so fingerprints do not move); never true/false."""
    if isinstance(value, bool):
        raise ValueError("Input should be a number, not true/false")
    out = handler(value)
    return value if type(value) is int and isinstance(out, float) else out


def Int(**rule: Any) -> Any:  # noqa: N802 - reads as a type
    """An integer parameter with a rule (``ge=0``)."""
    return Annotated[int, Field(**rule), WrapValidator(_number)]


def Float(**rule: Any) -> Any:  # noqa: N802 - reads as a type
    """A real parameter with a rule (``gt=0, le=1``); an int given stays an int."""
    return Annotated[float, Field(**rule), WrapValidator(_number)]


Unit = Float(gt=0, le=1)
NonNegative = Float(ge=0)


def _p(tp: Any, description: str) -> Any:
    return Annotated[tp, Field(description=description)]


#: name → type with its rule. Aliases (eta/learning_rate, ...) are both listed; only one may be set.
_FIELDS: dict[str, Any] = {
    "eta": _p(Unit, "Learning rate: shrinkage of each tree's weights, in (0, 1]. Default 0.3."),
    "learning_rate": _p(Unit, "Same as eta (the scikit-learn name); set one of them."),
    "max_depth": _p(Int(ge=0), "Deepest tree, >= 0 (0: no limit, lossguide only). Default 6."),
    "min_child_weight": _p(NonNegative, "Least hessian sum in a leaf, >= 0. Default 1."),
    "subsample": _p(Unit, "Share of rows sampled per tree, in (0, 1]. Default 1."),
    "colsample_bytree": _p(Unit, "Share of columns sampled per tree, in (0, 1]. Default 1."),
    "colsample_bylevel": _p(Unit, "Share of columns sampled per depth level, in (0, 1]. Default 1."),
    "colsample_bynode": _p(Unit, "Share of columns sampled per split, in (0, 1]. Default 1."),
    "lambda": _p(NonNegative, "L2 regularisation of leaf weights, >= 0. Default 1."),
    "reg_lambda": _p(NonNegative, "Same as lambda; set one of them."),
    "alpha": _p(NonNegative, "L1 regularisation of leaf weights, >= 0. Default 0."),
    "reg_alpha": _p(NonNegative, "Same as alpha; set one of them."),
    "gamma": _p(NonNegative, "Least loss reduction to split a leaf, >= 0. Default 0."),
    "min_split_loss": _p(NonNegative, "Same as gamma; set one of them."),
    "max_delta_step": _p(NonNegative, "Largest leaf output step, >= 0 (0: no limit). Default 0."),
    "scale_pos_weight": _p(Float(gt=0),
                           "Weight of positive rows (binary), > 0; about negatives/positives. Default 1."),
    "max_bin": _p(Int(ge=2), "Histogram bins per feature (hist/approx), >= 2. Default 256."),
    "max_leaves": _p(Int(ge=0), "Most leaves per tree, >= 0 (0: no limit). Default 0."),
    "tree_method": _p(Literal["auto", "hist", "approx", "exact"], "Tree construction algorithm. Default hist."),
    "grow_policy": _p(Literal["depthwise", "lossguide"], "Split nearest the root first, or the best leaf first."),
    "sampling_method": _p(Literal["uniform", "gradient_based"], "Row sampling (gradient_based: GPU only)."),
    "num_parallel_tree": _p(Int(ge=1), "Trees per round, >= 1 (>1: boosted random forest)."),
    "max_cat_to_onehot": _p(Int(ge=1),
                            "Categorical features with fewer categories split one-hot, >= 1."),
    "max_cat_threshold": _p(Int(ge=1), "Most categories on one side of a categorical split, >= 1."),
    "base_score": _p(Float(), "Initial prediction of every row (default: estimated from the labels)."),
    "huber_slope": _p(Float(gt=0), "Delta of reg:pseudohubererror, > 0. Default 1."),
    "seed": _p(Int(ge=0), "Random seed, >= 0 (default: training.split.seed)."),
    "nthread": _p(Int(ge=1),
                  "Threads per worker, >= 1 (default: training.scaling.cpus_per_worker, rounded down)."),
    "verbosity": _p(Int(ge=0, le=3), "XGBoost log level 0 (silent) .. 3 (debug)."),
    "eval_metric": Annotated[
        Any, PlainValidator(_check_metrics),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                        "description": "Validation metric(s); early stopping watches the last one "
                                       "(default: the objective's, e.g. [logloss, auc])."}),
    ],
}

XGBoostParams = TypedDict("XGBoostParams", _FIELDS, total=False)  # type: ignore[misc]
XGBoostParams.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
XGBoostParams.__doc__ = "XGBoost booster parameters Loom checks; others go under extra_params."

PARAM_NAMES = frozenset(_FIELDS)


def param_help(name: str) -> str | None:
    """The description of a known parameter (its meaning, rule and default), for hints."""
    for meta in getattr(_FIELDS.get(name), "__metadata__", ()):
        text = getattr(meta, "description", None) or (getattr(meta, "json_schema", None) or {}).get("description")
        if text:
            return f"{name}: {text}"
    return None


#: Parameters with two names in XGBoost; a recipe may set only one of each pair.
SAME_PARAM = (("eta", "learning_rate"), ("lambda", "reg_lambda"), ("alpha", "reg_alpha"),
              ("gamma", "min_split_loss"))
#: Names people put into params that Loom sets elsewhere: the key that holds them.
SET_ELSEWHERE = {
    "objective": "training.model.objective", "num_class": "training.model.num_class",
    "n_estimators": "training.model.num_boost_round", "num_boost_round": "training.model.num_boost_round",
    "num_round": "training.model.num_boost_round", "early_stopping_rounds": "training.model.early_stopping_rounds",
    "device": "training.scaling.use_gpu", "random_state": "training.model.params.seed",
}


def check_same_param_once(params: dict[str, Any]) -> None:
    """Raise ValueError when two names of one parameter (eta and learning_rate) are both set."""
    for a, b in SAME_PARAM:
        if a in params and b in params:
            raise ValueError(f"'{a}' and '{b}' are the same XGBoost parameter; set only one")


def search_problem(name: str, dim: dict[str, Any], extra: set[str]) -> PydanticCustomError | None:
    """The error for one ``tuning.search_space`` entry: an unknown name, or values the rule refuses."""
    at = f"tuning.search_space.{name}"
    if name in extra:
        return None
    if name not in PARAM_NAMES:
        import difflib  # error path only

        close = difflib.get_close_matches(name, sorted(PARAM_NAMES), n=1)
        hint = f"Did you mean '{close[0]}'? " if close else ""
        hint += "A parameter Loom does not check can be searched once it is in training.model.extra_params."
        if name in SET_ELSEWHERE:
            hint = f"Set it with {SET_ELSEWHERE[name]}; it cannot be searched."
        return _located(at, "'{name}' is not an XGBoost parameter Loom knows.", hint, name=name)
    low, high = dim.get("low"), dim.get("high")
    if low is not None and (low >= high or (dim.get("type") == "loguniform" and low <= 0)):
        return None  # a malformed range: spec/checks.py check_tuning says what is wrong with it
    values = dim.get("values") or [low, high]
    if dim.get("type") == "randint":
        values = [dim["low"], dim["high"] - 1]
    adapter = TypeAdapter(_FIELDS[name])
    for value in values:
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            rule = exc.errors(include_url=False)[0]["msg"]
            return _located(at, "The search space reaches {value}, which {name} refuses: {rule}.",
                            "Keep the search inside the parameter's range (see `loom schema`).",
                            name=name, value=repr(value), rule=rule)
    return None


def _located(at: str, message: str, hint: str, **ctx: Any) -> PydanticCustomError:
    """An error whose recipe key is ``at`` below the model that raises it (see loading/report.py)."""
    return PydanticCustomError("loom_located", message, {**ctx, "loom_at": at, "loom_hint": hint})
