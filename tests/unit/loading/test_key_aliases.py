"""Keys other tools spell differently (Feast, Ray, XGBoost) get Loom's name as the did-you-mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import RecipeError
from framework.loading import load_recipe

# (override on top of recipe=churn, the key path, the Loom name suggested, the tool named)
CASES = [
    ("+data.sources.churn_labels.created_timestamp_column=created", "data.sources.churn_labels.created_timestamp_column",
     "created_timestamp_field", "Feast"),
    ("+data.sources.churn_labels.timestamp_column=ts", "data.sources.churn_labels.timestamp_column", "timestamp_field", "Feast"),
    ("+data.sources.churn_labels.event_timestamp_column=ts", "data.sources.churn_labels.event_timestamp_column",
     "timestamp_field", "Feast"),
    ("+features.views.customer_profile.schema={a: int64}", "features.views.customer_profile.schema", "fields", "Feast"),
    ("+features.views.customer_profile.ttl=60", "features.views.customer_profile.ttl", "ttl_s", "Feast"),
    ("+features.views.customer_profile.batch_source=x", "features.views.customer_profile.batch_source", "source", "Feast"),
    ("+features.entities.customer.join_key=customer_id", "features.entities.customer.join_key", "join_keys", "Feast"),
    ("+features.feature_service=x", "features.feature_service", "service", "Feast"),
    ("+features.store.online_store=x", "features.store.online_store", "online", "Feast"),
    ("+serving.num_replicas=2", "serving.num_replicas", "replicas", "Ray Serve"),
    ("+training.model.n_estimators=300", "training.model.n_estimators", "num_boost_round", "XGBoost"),
]


@pytest.mark.parametrize("override,path,loom,tool", CASES, ids=[c[1].rsplit(".", 1)[-1] for c in CASES])
def test_other_tools_names_suggest_loom_names(project: Path, override, path, loom, tool) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", override])
    (problem,) = info.value.problems
    assert problem.path == path
    text = problem.render()
    assert "Unknown key" in text and f"Did you mean '{loom}'?" in text and f"is {tool}" in text, text


def test_an_alias_only_applies_where_loom_has_that_key(project: Path) -> None:
    """'features' is Feast's name for a view's fields, but in the service it is Loom's own key."""
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", "+data.sources.churn_labels.ttl=60"])
    text = info.value.render()
    assert "ttl_s" not in text and "Valid: checks, created_timestamp_field" in text, text


def test_plain_typos_in_keyed_sections_get_did_you_mean(project: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", "+data.sources.churn_labels.timestamp_feild=ts"])
    assert "Did you mean 'timestamp_field'?" in info.value.render()
