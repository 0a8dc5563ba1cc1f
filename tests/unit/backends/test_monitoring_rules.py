"""Alert rules are per model: generated from the recipe's thresholds, and every Loom series selector
in a rendered rule (generated or the user's) matches only its model."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from framework.backends.base import RunContext
from framework.backends.alert_rules import alert_rules
from framework.backends.monitoring import MonitoringBackend
from framework.backends.promql import promql_string, scope_to_model
from framework.compile.compiler import compile_steps
from framework.spec.monitoring import GENERATED_ALERTS

ERROR_RATE = ('sum(rate(ray_loom_requests_total{outcome="error"}[5m])) '
              '/ sum(rate(ray_loom_requests_total[5m])) > 0.02')
P99 = "histogram_quantile(0.99, sum(rate(ray_loom_request_latency_ms_bucket[5m])) by (le)) > 250"

# (id, expression, the expression scoped to model "churn")
REWRITES = [
    ("bare-name", "ray_loom_requests_total", 'ray_loom_requests_total{model="churn"}'),
    ("with-matcher", 'ray_loom_requests_total{outcome="error"}',
     'ray_loom_requests_total{outcome="error",model="churn"}'),
    ("range-vector", "rate(ray_loom_requests_total[5m])", 'rate(ray_loom_requests_total{model="churn"}[5m])'),
    ("standard-error-rate", ERROR_RATE,
     'sum(rate(ray_loom_requests_total{outcome="error",model="churn"}[5m])) '
     '/ sum(rate(ray_loom_requests_total{model="churn"}[5m])) > 0.02'),
    ("standard-p99-by-le", P99,
     'histogram_quantile(0.99, sum(rate(ray_loom_request_latency_ms_bucket{model="churn"}[5m])) by (le)) > 250'),
    ("prefix-names", "ray_loom_request_latency_ms_bucket / ray_loom_requests_total / ray_loom_request",
     'ray_loom_request_latency_ms_bucket{model="churn"} / ray_loom_requests_total{model="churn"}'
     ' / ray_loom_request{model="churn"}'),
    ("brace-and-comma-in-value", 'ray_loom_requests_total{version="a}b,c",outcome="error"}',
     'ray_loom_requests_total{version="a}b,c",outcome="error",model="churn"}'),
    ("escaped-quote-in-value", r'ray_loom_requests_total{version="x\"}"}',
     r'ray_loom_requests_total{version="x\"}",model="churn"}'),
    ("single-quoted-value", "ray_loom_requests_total{version='a}'}",
     "ray_loom_requests_total{version='a}',model=\"churn\"}"),
    ("empty-braces", "ray_loom_requests_total{}", 'ray_loom_requests_total{model="churn"}'),
    ("trailing-comma", 'ray_loom_requests_total{outcome="error",}',
     'ray_loom_requests_total{outcome="error",model="churn"}'),
    ("spaces", 'ray_loom_requests_total { outcome = "error" } [5m]',
     'ray_loom_requests_total { outcome = "error",model="churn" } [5m]'),
    ("regex-matcher", 'ray_loom_requests_total{outcome=~"error|client_error"}',
     'ray_loom_requests_total{outcome=~"error|client_error",model="churn"}'),
    ("other-series-untouched", 'ray_serve_num_http_requests_total{route="/x"} + up + xray_loom_a + a_ray_loom_b',
     'ray_serve_num_http_requests_total{route="/x"} + up + xray_loom_a + a_ray_loom_b'),
    ("mixed-series", "sum(rate(ray_loom_requests_total[5m])) / sum(rate(ray_serve_num_http_requests_total[5m]))",
     'sum(rate(ray_loom_requests_total{model="churn"}[5m])) / sum(rate(ray_serve_num_http_requests_total[5m]))'),
    ("strings-untouched", 'label_replace(ray_loom_circuit_state, "dst", "ray_loom_x", "src", "(.*)")',
     'label_replace(ray_loom_circuit_state{model="churn"}, "dst", "ray_loom_x", "src", "(.*)")'),
    ("label-lists-untouched", "sum by (ray_loom_shard) (ray_loom_fallbacks_total) * on (ray_loom_shard)"
     " group_left (level) ray_loom_cache_hits_total",
     'sum by (ray_loom_shard) (ray_loom_fallbacks_total{model="churn"}) * on (ray_loom_shard)'
     ' group_left (level) ray_loom_cache_hits_total{model="churn"}'),
    ("upper-case-keywords", "SUM BY (le) (ray_loom_request_latency_ms_bucket)",
     'SUM BY (le) (ray_loom_request_latency_ms_bucket{model="churn"})'),
    ("label-names-in-other-braces", 'up{ray_loom_job="x"}', 'up{ray_loom_job="x"}'),
    ("subquery-and-offset", "max_over_time(ray_loom_circuit_state[1h:5m] offset 10m) >= 2",
     'max_over_time(ray_loom_circuit_state{model="churn"}[1h:5m] offset 10m) >= 2'),
    ("comment-stays-last", 'ray_loom_requests_total{outcome="error" # why\n}',
     'ray_loom_requests_total{outcome="error",model="churn" # why\n}'),
    ("dunder-name", '{__name__="ray_loom_requests_total",outcome="error"}',
     '{__name__="ray_loom_requests_total",outcome="error",model="churn"}'),
    ("dunder-name-regex-untouched", '{__name__=~"ray_loom_.*"}', '{__name__=~"ray_loom_.*"}'),
    ("quoted-metric-name", '{"ray_loom_requests_total", outcome="error"}',
     '{"ray_loom_requests_total", outcome="error",model="churn"}'),
]

# A selector that already names the model is the user's choice and stays as written.
EXPLICIT = [
    'ray_loom_requests_total{model="fraud"}',
    'ray_loom_requests_total{outcome="error", model!="fraud"}',
    'sum(rate(ray_loom_requests_total{model=~"churn|fraud"}[5m])) by (model)',
    '{__name__="ray_loom_requests_total", "model"="fraud"}',
]

NEEDS_PROMETHEUS_3 = {"quoted-metric-name"}  # promtool 2.x parses no quoted metric or label names



def _ctx(project: Path, tmp_path: Path, *overrides: str) -> RunContext:
    from framework.loading import load_recipe

    recipe = load_recipe(["recipe=churn", *overrides], project_dir=project).recipe
    return RunContext(recipe=recipe, project_dir=project, workspace=tmp_path / "ws")


def _apply(ctx: RunContext) -> dict:
    (step,) = [s for s in compile_steps(ctx.recipe, {}) if s.kind == "monitoring.rules"]
    return MonitoringBackend().apply(step, ctx)


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _exprs(rules: dict) -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


@pytest.mark.parametrize(("expr", "expected"), [c[1:] for c in REWRITES], ids=[c[0] for c in REWRITES])
def test_every_loom_selector_gets_the_model_matcher(expr: str, expected: str) -> None:
    assert scope_to_model(expr, "churn") == expected
    assert scope_to_model(expected, "churn") == expected  # scoping twice changes nothing


@pytest.mark.parametrize("expr", EXPLICIT)
def test_a_selector_with_its_own_model_matcher_is_unchanged(expr: str) -> None:
    assert scope_to_model(expr, "churn") == expr


def test_only_the_selectors_without_a_model_matcher_are_scoped() -> None:
    expr = 'ray_loom_requests_total{model="fraud"} / ray_loom_requests_total'
    assert scope_to_model(expr, "churn") == (
        'ray_loom_requests_total{model="fraud"} / ray_loom_requests_total{model="churn"}')


def test_the_model_id_is_escaped_as_a_promql_string() -> None:
    assert promql_string('we"ird\\id') == r'"we\"ird\\id"'
    assert promql_string("line\nbreak") == r'"line\nbreak"'
    assert scope_to_model("ray_loom_cache_hits_total", 'a"b') == r'ray_loom_cache_hits_total{model="a\"b"}'


USER_ALERT = "monitoring.alerts=[{name:cold_cache,expr:'rate(ray_loom_cache_hits_total[5m]) < 1',for_s:60}]"


def test_every_generated_selector_for_churn_matches_only_churn(project: Path, tmp_path: Path) -> None:
    exprs = _exprs(alert_rules(_ctx(project, tmp_path, USER_ALERT,
                                    "++monitoring.drift.max_feature_age_s=3600").recipe))
    assert list(exprs) == [*GENERATED_ALERTS, "cold_cache"]
    assert exprs["stale_features"] == ('max by (model, view) (ray_loom_feature_age_seconds'
                                       '{model="churn",stat="mean"}) > 3600')
    assert exprs["cold_cache"] == 'rate(ray_loom_cache_hits_total{model="churn"}[5m]) < 1'
    for expr in exprs.values():
        selectors = re.findall(r"ray_loom_\w+(\{[^}]*\})?", expr)
        assert selectors and all('model="churn"' in s for s in selectors), expr
        assert scope_to_model(expr, "churn") == expr  # nothing left unscoped


def test_the_thresholds_and_windows_are_the_recipes(project: Path, tmp_path: Path) -> None:
    rules = alert_rules(_ctx(project, tmp_path, "monitoring.slo.max_error_rate=0.1",
                             "monitoring.slo.window_s=60", "monitoring.drift.psi_threshold=0.35",
                             "monitoring.drift.for_s=7.5").recipe)
    by_name = {r["alert"]: r for r in rules["groups"][0]["rules"]}
    assert by_name["high_error_rate"]["expr"].endswith("> 0.1") and "[60s]" in by_name["high_error_rate"]["expr"]
    assert by_name["feature_drift"]["expr"].endswith("> 0.35") and by_name["feature_drift"]["for"] == "7500ms"
    assert "0.35" in by_name["score_drift"]["annotations"]["summary"]
    assert rules["groups"][0]["interval"] == "15s"


def test_null_thresholds_and_disabled_drift_render_no_rule(project: Path, tmp_path: Path) -> None:
    rules = alert_rules(_ctx(project, tmp_path, "monitoring.slo.max_error_rate=null",
                             "monitoring.drift.enabled=false").recipe)
    assert list(_exprs(rules)) == ["slow_predictions"]


def test_a_user_alert_may_not_take_a_generated_name(project: Path) -> None:
    from framework.errors import RecipeError
    from framework.loading import load_recipe

    with pytest.raises(RecipeError, match="high_error_rate are Loom's generated alerts"):
        load_recipe(["recipe=churn", "monitoring.alerts=[{name:high_error_rate,expr:'up == 0'}]"],
                    project_dir=project)


def test_a_rate_window_shorter_than_two_scrapes_is_refused(project: Path) -> None:
    from framework.errors import RecipeError
    from framework.loading import load_recipe

    with pytest.raises(RecipeError, match="at least twice scrape_interval_s"):
        load_recipe(["recipe=churn", "monitoring.scrape_interval_s=10", "monitoring.drift.window_s=15"],
                    project_dir=project)


def test_rules_for_two_models_differ_only_by_model(project: Path, tmp_path: Path) -> None:
    churn = alert_rules(_ctx(project, tmp_path).recipe)
    fraud = alert_rules(_ctx(project, tmp_path, "registry.model_name=fraud").recipe)
    assert churn != fraud
    assert json.loads(json.dumps(churn).replace("churn", "fraud")) == fraud
    assert all(r["labels"]["model"] == "fraud" for r in fraud["groups"][0]["rules"])


def test_the_written_rules_file_holds_the_scoped_rules(project: Path, tmp_path: Path) -> None:
    ctx = _ctx(project, tmp_path)
    path = Path(_apply(ctx)["rules_file"])
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == alert_rules(ctx.recipe)


def test_a_written_file_is_seen_and_a_missing_one_re_renders(project: Path, tmp_path: Path) -> None:
    ctx = _ctx(project, tmp_path)
    (step,) = [s for s in compile_steps(ctx.recipe, {}) if s.kind == "monitoring.rules"]
    backend = MonitoringBackend()
    assert backend.observe(step, ctx) is None
    backend.apply(step, ctx)
    assert backend.observe(step, ctx) == step.fingerprint
    (tmp_path / "ws" / "monitoring" / "churn" / "dashboard.json").unlink()
    assert backend.observe(step, ctx) is None
    backend.apply(step, ctx)
    backend.delete(step.address, ctx)
    assert not list((tmp_path / "ws" / "monitoring" / "churn").iterdir())


def test_promtool_accepts_the_rendered_rules(project: Path, tmp_path: Path, promtool: str) -> None:
    rules_file = _apply(_ctx(project, tmp_path))["rules_file"]
    result = _promtool(promtool, "check", "rules", rules_file, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_parses_every_rewritten_expression(tmp_path: Path, promtool: str) -> None:
    exprs = [c[2] for c in REWRITES if c[0] not in NEEDS_PROMETHEUS_3]
    exprs += [scope_to_model(e, "churn") for e in EXPLICIT if '"model"' not in e]
    rules = [{"alert": f"rewrite_{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "rewrites.yml").write_text(json.dumps({"groups": [{"name": "rewrites", "rules": rules}]}),
                                           encoding="utf-8")
    result = _promtool(promtool, "check", "rules", "rewrites.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overrides", [
    (), ("monitoring.drift.enabled=false",), ("++monitoring.slo.max_error_rate=null",),
    ("monitoring.alerts=[{name:mine,expr:'up == 0'}]",),
], ids=["default", "no-drift", "no-error-rule", "own-alert"])
def test_the_plan_lists_every_alert_the_rules_file_holds(project: Path, tmp_path: Path,
                                                         overrides: tuple[str, ...]) -> None:
    ctx = _ctx(project, tmp_path, *overrides)
    rendered = [r["alert"] for r in alert_rules(ctx.recipe)["groups"][0]["rules"]]
    (step,) = [s for s in compile_steps(ctx.recipe, {}) if s.kind == "monitoring.rules"]
    assert step.attrs["alerts"] == rendered == ctx.recipe.monitoring.alert_names()
