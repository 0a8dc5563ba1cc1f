"""``promtool test rules`` over the rule files rendered from the churn and fraud recipes.

Each generated alert gets input series that breach its threshold and series that do not: the
breaching ones fire with their labels and annotations (the feature, the threshold), the others
stay silent, and nothing fires before ``for``. Both models' files are loaded together, so a rule
that leaked across models would show up as an unexpected alert.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from framework.backends.base import RunContext
from framework.backends.monitoring import MonitoringBackend
from framework.compile.compiler import compile_steps

MODELS = {"churn": "churn", "fraud": "fraud"}  # model id -> recipe


def _render(project: Path, out: Path) -> list[str]:
    from framework.loading import load_recipe

    files = []
    for model, recipe_name in MODELS.items():
        recipe = load_recipe([f"recipe={recipe_name}"], project_dir=project).recipe
        assert recipe.model_id == model
        ctx = RunContext(recipe=recipe, project_dir=project, workspace=out / model)
        (step,) = [s for s in compile_steps(recipe, {}) if s.kind == "monitoring.rules"]
        files.append(MonitoringBackend().apply(step, ctx)["rules_file"])
    return files


def _series(name: str, values: str, **labels: str) -> dict:
    return {"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
            "values": values}


def _alert(model: str, severity: str, summary: str, description: str, **labels: str) -> dict:
    """An expected alert: promtool compares every label and every annotation."""
    return {"exp_labels": {"severity": severity, "model": model, **labels},
            "exp_annotations": {"summary": summary, "description": description}}


def _run(promtool: str, tmp_path: Path, files: list[str], tests: list[dict]) -> None:
    spec = {"rule_files": files, "evaluation_interval": "15s", "tests": tests}
    (tmp_path / "test.yml").write_text(json.dumps(spec), encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr



@pytest.fixture
def rule_files(project: Path, tmp_path: Path) -> list[str]:
    return _render(project, tmp_path / "ws")


def test_error_rate_fires_for_its_model_only(rule_files, tmp_path, promtool):
    requests = "ray_loom_requests_total"
    series = [  # fraud: 10 failed (no version answered) in 210 (4.8%); churn: 1 in 101, client errors aside
        _series(requests, "0+100x30", model="fraud", version="1", outcome="ok"),
        _series(requests, "0+100x30", model="fraud", version="2", outcome="ok"),
        _series(requests, "0+10x30", model="fraud", version="none", outcome="error"),
        _series(requests, "0+100x30", model="churn", version="1", outcome="ok"),
        _series(requests, "0+1x30", model="churn", version="none", outcome="error"),
        _series(requests, "0+50x30", model="churn", version="none", outcome="client_error"),
    ]
    fired = _alert("fraud", "critical", "More than 2% of fraud's requests fail.",
                   "Error rate 4.762% over 300s (threshold 0.02, monitoring.slo.max_error_rate).")
    _run(promtool, tmp_path, rule_files, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "3m", "alertname": "high_error_rate", "exp_alerts": []},  # pending (for: 300s)
        {"eval_time": "20m", "alertname": "high_error_rate", "exp_alerts": [fired]},
    ]}])


def test_p99_latency_fires_for_the_slow_version_only(rule_files, tmp_path, promtool):
    bucket = "ray_loom_request_latency_ms_bucket"
    series = []
    for le, fast, slow in (("100", "0+100x30", "0x30"), ("200", "0+100x30", "0x30"),
                           ("500", "0+100x30", "0+10x30"), ("+Inf", "0+100x30", "0+10x30")):
        series.append(_series(bucket, fast, model="churn", version="1", le=le))  # p99 ~99 ms
        series.append(_series(bucket, slow, model="churn", version="2", le=le))  # p99 ~497 ms
    fired = _alert("churn", "warning", "p99 latency of churn version 2 is above 250 ms.",
                   "p99 497.0 ms over 300s (threshold 250 ms, monitoring.slo.max_p99_latency_ms).",
                   version="2")
    _run(promtool, tmp_path, rule_files, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "3m", "alertname": "slow_predictions", "exp_alerts": []},
        {"eval_time": "20m", "alertname": "slow_predictions", "exp_alerts": [fired]},
    ]}])


def test_feature_psi_fires_per_drifted_feature_with_the_threshold_in_its_summary(rule_files, tmp_path, promtool):
    psi = "ray_loom_feature_psi"
    series = [  # two replicas of churn v1; the worst one counts; NaN (window not full) is not drift
        _series(psi, "0.5x20", model="churn", version="1", feature="tenure_months", replica="a"),
        _series(psi, "0.05x20", model="churn", version="1", feature="tenure_months", replica="b"),
        _series(psi, "0.05x20", model="churn", version="1", feature="monthly_charges", replica="a"),
        _series(psi, " ".join(["NaN"] * 21), model="churn", version="1", feature="support_calls", replica="a"),
        _series(psi, "0.15x20", model="fraud", version="1", feature="txn_count_24h", replica="a"),
    ]
    fired = _alert("churn", "warning", "Feature tenure_months of churn version 1 drifted: PSI 0.500 > 0.2.",
                   "PSI of the last 600s of traffic against the training reference profile "
                   "(threshold 0.2, monitoring.drift.psi_threshold).", version="1", feature="tenure_months")
    _run(promtool, tmp_path, rule_files, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "4m", "alertname": "feature_drift", "exp_alerts": []},  # for: 300s
        {"eval_time": "10m", "alertname": "feature_drift", "exp_alerts": [fired]},
    ]}])


def test_score_psi_fires_for_the_drifted_version(rule_files, tmp_path, promtool):
    series = [_series("ray_loom_score_psi", "0.3x20", model="fraud", version="3", replica="a"),
              _series("ray_loom_score_psi", "0.1x20", model="fraud", version="2", replica="a"),
              _series("ray_loom_score_psi", "0.19x20", model="churn", version="1", replica="a")]
    fired = _alert("fraud", "warning", "Scores of fraud version 3 drifted: PSI 0.300 > 0.2.",
                   "PSI of the last 600s of scores against training's (threshold 0.2, "
                   "monitoring.drift.psi_threshold).", version="3")
    _run(promtool, tmp_path, rule_files, [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "10m", "alertname": "score_drift", "exp_alerts": [fired]},
    ]}])


@pytest.mark.parametrize(("alertname", "series", "what", "description"), [
    ("missing_features", "ray_loom_feature_missing_total", "is missing in 10% of rows (threshold 0.05)",
     "Rows without the feature over 600s, of the rows binned (monitoring.drift.missing_threshold)."),
    ("out_of_range_features", "ray_loom_feature_out_of_range_total",
     "is outside its training range in 10% of rows (threshold 0.05)",
     "Values outside the range training saw, over 600s, of the rows binned "
     "(monitoring.drift.out_of_range_threshold)."),
])
def test_missing_and_out_of_range_rates_fire_per_feature(rule_files, tmp_path, promtool, alertname, series,
                                                         what, description):
    rows = "ray_loom_monitored_rows_total"
    inputs = [  # two replicas: their rows and counts add up per version
        _series(rows, "0+60x40", model="churn", version="1", replica="a"),
        _series(rows, "0+40x40", model="churn", version="1", replica="b"),
        _series(series, "0+6x40", model="churn", version="1", feature="support_calls", replica="a"),
        _series(series, "0+4x40", model="churn", version="1", feature="support_calls", replica="b"),
        _series(series, "0+2x40", model="churn", version="1", feature="tenure_months", replica="a"),
        _series(rows, "0+100x40", model="fraud", version="1", replica="a"),
        _series(series, "0+4x40", model="fraud", version="1", feature="foreign_ratio", replica="a"),
    ]
    fired = _alert("churn", "warning", f"Feature support_calls of churn version 1 {what}.", description,
                   version="1", feature="support_calls")
    _run(promtool, tmp_path, rule_files, [{"interval": "1m", "input_series": inputs, "alert_rule_test": [
        {"eval_time": "4m", "alertname": alertname, "exp_alerts": []},
        {"eval_time": "30m", "alertname": alertname, "exp_alerts": [fired]},
    ]}])


def test_no_traffic_fires_nothing(rule_files, tmp_path, promtool):
    idle = [_series("ray_loom_requests_total", "0x30", model="churn", version="1", outcome="ok"),
            _series("ray_loom_monitored_rows_total", "0x30", model="churn", version="1", replica="a"),
            _series("ray_loom_feature_missing_total", "0x30", model="churn", version="1",
                    feature="support_calls", replica="a")]
    tests = [{"eval_time": "20m", "alertname": name, "exp_alerts": []}
             for name in ("high_error_rate", "slow_predictions", "feature_drift", "score_drift",
                          "missing_features", "out_of_range_features")]
    _run(promtool, tmp_path, rule_files, [{"interval": "1m", "input_series": idle, "alert_rule_test": tests}])


def test_stale_features_fires_when_the_served_values_grow_old(promtool: str, project: Path,
                                                               tmp_path: Path) -> None:
    from framework.loading import load_recipe

    recipe = load_recipe(["recipe=churn", "++monitoring.drift.max_feature_age_s=3600",
                          "monitoring.drift.for_s=60"], project_dir=project).recipe
    ctx = RunContext(recipe=recipe, project_dir=project, workspace=tmp_path / "ws")
    (step,) = [s for s in compile_steps(recipe, {}) if s.kind == "monitoring.rules"]
    rules = MonitoringBackend().apply(step, ctx)["rules_file"]
    age = "ray_loom_feature_age_seconds"
    series = [_series(age, "4200x20", model="churn", view="customer_profile", stat="mean"),
              _series(age, "100x10", model="churn", view="churn_labels", stat="mean"),
              _series(age, "99999x10", model="churn", view="customer_profile", stat="max")]
    summary = ("Online features of view customer_profile served by churn are 1h 10m 0s old on "
               "average (threshold 3600 s).")
    description = ("Mean age of the values served (now minus their event time): is materialization "
                   "or the push path stalled? (monitoring.drift.max_feature_age_s)")
    _run(promtool, tmp_path, [rules], [{
        "interval": "15s", "input_series": series,
        "alert_rule_test": [
            {"eval_time": "30s", "alertname": "stale_features", "exp_alerts": []},  # pending: for 60 s
            {"eval_time": "90s", "alertname": "stale_features", "exp_alerts": [
                _alert("churn", "warning", summary, description, view="customer_profile")]},
        ]}])
