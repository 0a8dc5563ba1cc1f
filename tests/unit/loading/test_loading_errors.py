"""The error table: invalid recipes and overrides, each with the message fragment a user must see."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import RecipeError
from framework.loading import load_recipe

# (id, overrides on top of recipe=churn, expected fragments, expected key path or None)
CASES = [
    ("unknown-template-option", ["rollout=canry"], ["Could not find template 'rollout/canry'", "Did you mean 'canary'?"], "rollout"),
    ("unknown-model-template", ["model=xgboost_binry"], ["model/xgboost_binry", "xgboost_binary"], "model"),
    ("unknown-key-override", ["training.model.paramz.x=1"], ["not in the recipe", "+training.model.paramz.x"], "training.model.paramz.x"),
    ("plus-on-a-present-key", ["+training.model.params.max_depth=1"], ["already in the recipe", "++training.model.params.max_depth"], "training.model.params.max_depth"),
    ("canary-step-out-of-range", ["rollout.steps=[5,120]"], ["Got 120", "Traffic percent must be 1..100"], "rollout.steps[1]"),
    ("canary-steps-fall", ["rollout.steps=[50,25,100]"], ["Steps must rise: 25 follows 50"], "rollout.steps[1]"),
    ("canary-steps-no-100", ["rollout.steps=[5,25,50]"], ["must end at 100", "Append 100"], "rollout.steps"),
    ("negative-interval", ["rollout.interval_s=-1"], ["greater than 0"], "rollout.interval_s"),
    ("failure-limit-zero", ["rollout.failure_limit=0"], ["greater than or equal to 1"], "rollout.failure_limit"),
    ("objective-typo", ["training.model.objective=binary:logstic"], ["Did you mean 'binary:logistic'?"], "training.model.objective"),
    ("gate-metric-typo", ["training.gates.0.metric=acu"], ["produces no such metric", "Did you mean 'auc'?"], "training.gates[0].metric"),
    ("gate-without-threshold", ["training.gates=[{metric: auc}]"], ["A gate needs 'min' or 'max'"], "training.gates[0]"),
    ("label-source-typo", ["training.label.source=churn_lables"], ["No data source has this name", "Did you mean 'churn_labels'?"], "training.label.source"),
    ("view-source-unknown", ["features.views.customer_profile.source=customers"], ["No data source has this name"], "features.views.customer_profile.source"),
    ("view-entity-typo", ["features.views.customer_profile.entities=[custmer]"], ["No entity has this name", "Did you mean 'customer'?"], "features.views.customer_profile.entities[0]"),
    ("service-field-typo", ["features.service.features=[customer_profile:tenure]"], ["has no field 'tenure'", "tenure_months"], "features.service.features[0]"),
    ("service-ref-no-view", ["features.service.features=[tenure_months]"], ["A feature reference is 'view:feature'"], "features.service.features[0]"),
    ("service-view-unknown", ["features.service.features=[profile:tenure_months]"], ["No feature view 'profile'", "customer_profile"], "features.service.features[0]"),
    ("label-is-feature", ["training.label.column=tenure_months"], ["The label is also one of the model's features"], "training.label.column"),
    ("split-leaves-nothing", ["training.split.test_fraction=0.8"], ["must be below 0.9"], "training.split"),
    ("split-fraction-range", ["training.split.test_fraction=1.5"], ["less than 1"], "training.split.test_fraction"),
    ("num-class-on-binary", ["+training.model.num_class=3"], ["num_class applies to multi:softprob only"], "training.model.num_class"),
    ("multiclass-without-num-class", ["model=xgboost_multiclass", "training.gates=[]", "~serving.labels"], ["multi:softprob needs num_class"], "training.model.num_class"),
    ("unknown-model-key", ["+training.model.param=1"], ["Unknown key", "Did you mean 'params'?"], "training.model.param"),
    ("tuning-metric", ["+training.tuning={search_space: {max_depth: {type: choice, values: [3, 6]}}, metric: rmse, mode: max}"], ["produces no such metric"], "training.tuning.metric"),
    ("sweep-not-a-param", ["serving.replicas=choice(1,2)"], ["work only on training.model.params"], "serving.replicas"),
    ("loguniform-zero", ["training.model.params.eta=tag(log,interval(0,0.3))"], ["loguniform bounds must be positive"], "training.tuning.search_space.eta.low"),
    ("fallback-type-typo", ["serving.fallback.0.type=previous"], ["Did you mean 'previous_version'?"], "serving.fallback[0]"),
    ("fallback-default-not-last", ["serving.fallback=[{type: default, prediction: x}, {type: previous_version}]"], ["'default' must be the last"], "serving.fallback[0].type"),
    ("fallback-rule-unknown-feature", ["serving.fallback=[{type: rules, rules: [{when: {tenure: '< 3'}, prediction: x}]}]"], ["Rules can test only the model's features", "tenure_months"], "serving.fallback[0].rules[0].when.tenure"),
    ("fallback-to-itself", ["serving.fallback=[{type: model, model_name: churn}]"], ["cannot fall back to itself"], "serving.fallback[0].model_name"),
    ("http-port-ray-dashboard", ["serving.http.port=8265"], ["taken by the Ray dashboard"], "serving.http.port"),
    ("metrics-port-worker-range", ["env.metrics_export_port=12000"], ["worker ports"], "env.metrics_export_port"),
    ("http-port-range", ["serving.http.port=70000"], ["less than or equal to 65535"], "serving.http.port"),
    ("plain-secret", ["serving.auth.api_keys.0.key=hunter2"], ["may not be written as a plain value", "Got '***'"], "serving.auth.api_keys[0].key"),
    ("target-key", ["+serving._target_=os.system"], ["'_target_' is not allowed"], "serving._target_"),
    ("env-in-plain-field", ["name=${oc.env:HOME}"], ["allowed only in secret or environment-driven fields"], "name"),
    ("unknown-resolver", ["description=${now:%Y}"], ["Resolver 'now' is not allowed"], "description"),
    ("path-escapes-workspace", ["+features.store.online.path=../x.db"], ["must stay inside the workspace"], "features.store.online.path"),
    ("redis-plain-password", ["store=redis", "+features.store.online.password=hunter2"], ["may not be written as a plain value"], "features.store.online.password"),
    ("autoscaling-bounds", ["+serving.autoscaling={min_replicas: 3, max_replicas: 2}"], ["min_replicas is above max_replicas"], "serving.autoscaling.min_replicas"),
    ("auth-without-keys", ["serving.auth.api_keys=[]"], ["Auth is on but no API key"], "serving.auth"),
    ("schema-version", ["schema_version=2"], ["Input should be 1"], "schema_version"),
    ("bad-name", ["name=Churn"], ["Names must start with a lowercase letter"], "name"),
    ("strategy-typo", ["rollout.strategy=canar"], ["Did you mean 'canary'?"], "rollout"),
    ("store-type-typo", ["features.store.online.type=sqlit"], ["Did you mean 'sqlite'?"], "features.store.online"),
    ("source-type", ["data.sources.churn_labels.type=json"], ["'parquet' or 'csv'"], "data.sources.churn_labels.type"),
    ("label-threshold-range", ["serving.labels.threshold=2"], ["less than or equal to 1"], "serving.labels.threshold"),
    ("secret-with-default", ["serving.auth.api_keys.0.key=${oc.env:LOOM_API_KEY,abc}"], ["may not have a default"], "serving.auth.api_keys[0].key"),
    ("unparsable-override", ["a=(("], ["Cannot parse this override"], "a"),
    ("missing-env-var", ["env.ray_address=${oc.env:LOOM_TEST_NO_SUCH_VAR}"], ["LOOM_TEST_NO_SUCH_VAR"], None),
    ("missing-required-section", ["~training.label"], ["Required key is missing"], "training.label"),
    ("push-view-offline", ["+features.views.customer_profile.push=true", "+features.views.customer_profile.online=false"], ["A push view writes to the online store; it needs online: true", "Set features.views.customer_profile.online: true"], "features.views.customer_profile.push"),
    ("push-csv-source", ["+features.views.customer_profile.push=true", "data.sources.customer_snapshots.type=csv"], ["only parquet sources can take them"], "features.views.customer_profile.push"),
    ("ttl-negative", ["features.views.customer_profile.ttl_s=-5"], ["greater than or equal to 0"], "features.views.customer_profile.ttl_s"),
    ("field-type-typo", ["features.views.customer_profile.fields.tenure_months=integer"], ["Did you mean 'int64'?"], "features.views.customer_profile.fields.tenure_months"),
    ("workers-zero", ["training.scaling.num_workers=0"], ["greater than or equal to 1"], "training.scaling.num_workers"),
    ("sweep-empty-range", ["training.model.params.max_depth=range(5,2)"], ["needs start < stop"], "training.model.params.max_depth"),
    ("sweep-glob", ["training.model.params.max_depth=glob(*)"], ["not a search dimension"], "training.model.params.max_depth"),
    ("resolver-name-built", ["+training.model.params.k=oc.env", "description='${${training.model.params.k}:HOME}'"], ["A resolver name cannot be built by interpolation"], "description"),
    ("resolver-name-part-built", ["description='${oc.${name}:HOME}'"], ["A resolver name cannot be built by interpolation"], "description"),
    ("reference-key-built", ["description='${${name}}'"], ["A reference's key cannot be built by interpolation"], "description"),
    ("env-var-name-built", ["env.ray_address='${oc.env:${name}}'"], ["variable name in ${oc.env:...} cannot be built"], "env.ray_address"),
    ("env-field-copied", ["description=${registry.tracking_uri}"], ["copies registry.tracking_uri (an environment-driven field) into description", "may not copy"], "description"),
    ("secret-copied", ["owner=${serving.auth.api_keys.0.key}"], ["copies serving.auth.api_keys[0].key (a secret) into owner"], "owner"),
    ("env-section-copied", ["description=${env}"], ["copies env.workspace_dir (an environment-driven field) into description"], "description"),
    ("override-nested-too-deep", ["+training.model.params.x=" + "[" * 40 + "]" * 40], ["nests brackets more than 32 deep"], "training.model.params.x"),
    ("template-choice-escapes", ["serving=../../../x"], ["may not leave the template folders", "standard"], "serving"),
    ("template-choice-absolute", ["serving=/etc/x"], ["may not leave the template folders"], "serving"),
    ("unauthenticated-open-listener", ["serving.auth.enabled=false", "serving.http.host=0.0.0.0"], ["Got '0.0.0.0'", "anyone who can reach 0.0.0.0:8000", "serving.http.allow_unauthenticated: true"], "serving.http.host"),
]


@pytest.mark.parametrize("overrides,fragments,path", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_override_is_reported(project: Path, overrides, fragments, path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", *overrides])
    text = info.value.render()
    for fragment in fragments:
        assert fragment in text, text
    if path is not None:
        assert path in [p.path for p in info.value.problems], text
    assert "Traceback" not in text
    assert all(p.file for p in info.value.problems), text


FILE_CASES = [
    ("python-tag", "payload: !!python/object/apply:os.system ['true']\n", ["bad.yaml:17", "python tags never load"]),
    ("target-in-file", "_target_: os.system\n", ["bad.yaml", "'_target_' is not allowed"]),
    ("unbalanced-yaml", "name: [churn\n", ["bad.yaml", "Unreadable YAML"]),
    ("unknown-top-level-key", "trainig: {}\n", ["bad.yaml", "trainig", "Did you mean 'training'?"]),
    ("alias-bomb", "".join(f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 10) + "]\n" for i in range(9)),
     ["bad.yaml:20", "l3[", "more than 10,000 values once its aliases", "that is the limit"]),
    ("alias-cycle", "loop: &l [*l]\n", ["bad.yaml:17", "loop[0]", "refers to its own anchor"]),
    ("deep-nesting", "deep: " + "[" * 900 + "]" * 900 + "\n", ["bad.yaml:17", "deep" + "[0]" * 31, "nest more than 32 deep"]),
    ("deep-through-an-alias", "a: &d " + "[" * 20 + "]" * 20 + "\nb: " + "[" * 15 + "*d" + "]" * 15 + "\n",
     ["bad.yaml:18", "b" + "[0]" * 15, "nest more than 32 deep"]),
    ("interpolation-bomb", "b0: xxxxxxxxxx\n" + "".join(f"b{i}: {('${b%d}' % (i - 1)) * 8}\n" for i in range(1, 9)),
     ["bad.yaml", "b6", "more than 1,000,000 characters"]),
    ("reference-chain", "".join(f"c{i}: ${{c{i + 1}}}\n" for i in range(20)) + "c20: x\n", ["bad.yaml", "chain more than 10 deep"]),
]

# (id, a line of recipes/churn.yaml, what replaces it, expected fragments)
EDIT_CASES = [
    ("defaults-dotdot", "  - serving: standard\n", "  - serving: ../../../x\n",
     ["bad.yaml:9", "defaults[4]", "Got 'serving: ../../../x'", "may not leave the template folders"]),
    ("defaults-absolute", "  - serving: standard\n", "  - serving: /etc/x\n",
     ["bad.yaml:9", "defaults[4]", "may not leave the template folders"]),
    ("defaults-plain-entry-dotdot", "  - _self_\n", "  - ../../x\n  - _self_\n",
     ["bad.yaml:14", "defaults[9]", "Got '../../x'"]),
]


@pytest.mark.parametrize("extra,fragments", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_invalid_recipe_file_names_the_file(project: Path, extra: str, fragments) -> None:
    base = (project / "recipes" / "churn.yaml").read_text()
    head, _, tail = base.partition("schema_version: 1\n")
    (project / "recipes" / "bad.yaml").write_text(head + "schema_version: 1\n" + extra + tail)
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=bad"])
    text = info.value.render()
    for fragment in fragments:
        assert fragment in text, text


@pytest.mark.parametrize("old,new,fragments", [c[1:] for c in EDIT_CASES], ids=[c[0] for c in EDIT_CASES])
def test_invalid_recipe_edit_names_the_file(project: Path, old: str, new: str, fragments) -> None:
    base = (project / "recipes" / "churn.yaml").read_text()
    assert old in base
    (project / "recipes" / "bad.yaml").write_text(base.replace(old, new, 1))
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=bad"])
    text = info.value.render()
    for fragment in fragments:
        assert fragment in text, text


def test_table_is_big_enough() -> None:
    assert len(CASES) + len(FILE_CASES) + len(EDIT_CASES) >= 40


def test_every_problem_reported_at_once(project: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", "rollout.steps=[5,120,50]", "serving.http.port=8265",
                     "training.gates.0.metric=acu"])
    paths = {p.path for p in info.value.problems}
    assert {"rollout.steps[1]", "serving.http.port", "training.gates[0].metric"} <= paths


def test_plain_secret_value_is_never_printed(project: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(["recipe=churn", "serving.auth.api_keys.0.key=hunter2-very-secret"])
    assert "hunter2-very-secret" not in info.value.render()


def test_missing_template_folder(project: Path) -> None:
    with pytest.raises(RecipeError, match="Template folder 'nope' does not exist"):
        load_recipe(["recipe=churn"], templates=["nope"])


def test_no_recipe_given(project: Path) -> None:
    with pytest.raises(RecipeError, match="No recipe given"):
        load_recipe(["rollout=canary"])
