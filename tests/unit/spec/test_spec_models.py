"""The recipe language's own rules: strict, frozen, described, every check registered."""

from __future__ import annotations

import inspect
import typing

import pytest
from pydantic import BaseModel, ValidationError

from framework.spec import CHECKS, Recipe, checks
from framework.spec.base import SecretRef, Spec


def _models(model: type[BaseModel], seen: set[type] | None = None) -> set[type[BaseModel]]:
    seen = seen if seen is not None else set()
    if model in seen:
        return seen
    seen.add(model)
    for info in model.model_fields.values():
        for tp in _types(info.annotation):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                _models(tp, seen)
    return seen


def _types(tp: typing.Any) -> typing.Iterator[typing.Any]:
    yield tp
    for arg in typing.get_args(tp):
        yield from _types(arg)


ALL_MODELS = sorted(_models(Recipe), key=lambda m: m.__name__)


def test_every_check_is_registered() -> None:
    defined = {name for name, fn in inspect.getmembers(checks, inspect.isfunction) if name.startswith("check_")}
    assert defined == {fn.__name__ for fn in CHECKS}


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_field_is_described(model: type[BaseModel]) -> None:
    assert model.__doc__, f"{model.__name__} has no docstring"
    missing = [name for name, info in model.model_fields.items() if not info.description]
    assert not missing, f"{model.__name__}: fields without description: {missing}"


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_model_is_strict_and_frozen(model: type[BaseModel]) -> None:
    assert issubclass(model, Spec)
    assert model.model_config["extra"] == "forbid" and model.model_config["frozen"] is True


def test_secret_ref_rejects_plain_values_and_hides_itself() -> None:
    with pytest.raises(ValidationError, match="secrets never sit in YAML"):
        SecretRef.model_validate("hunter2")
    with pytest.raises(ValidationError, match="exactly one"):
        SecretRef.model_validate({})
    ref = SecretRef(env="MY_KEY")
    assert "MY_KEY" in repr(ref)


def test_secret_ref_reveals_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_T_SECRET", "s3cret")
    assert SecretRef(env="LOOM_T_SECRET").reveal() == "s3cret"


def test_schema_exports_descriptions() -> None:
    from framework import api

    schema = api.schema()
    assert schema["title"] == "Loom recipe"
    assert "Rollout strategy." in str(schema)


def test_committed_schema_is_current() -> None:
    import json
    from pathlib import Path

    from framework import api

    committed = Path(__file__).resolve().parents[3] / "docs" / "recipe.schema.json"
    assert json.loads(committed.read_text()) == json.loads(json.dumps(api.schema())), \
        "docs/recipe.schema.json is stale: run `make schema`"
