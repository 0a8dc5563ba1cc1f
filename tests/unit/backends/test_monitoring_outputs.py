"""The other monitoring files: the Grafana dashboard (structure, queries promtool parses, scoped to
the model) and the Alertmanager config (amtool accepts it; secrets only ever in 0600 files)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from framework.backends.base import RunContext
from framework.backends.grafana import dashboard
from framework.backends.monitoring import MonitoringBackend, rules_dir
from framework.backends.promql import scope_to_model
from framework.compile.compiler import compile_steps
from framework.errors import BackendError

TOKEN = "hook-token-0123456789"
HOOK = ("++monitoring.alertmanager={address:'127.0.0.1:19093',webhook:{url:'https://hooks.example/loom',"
        "bearer_token:{env:LOOM_TEST_HOOK_TOKEN}},group_wait_s:1.5}")


def _ctx(project: Path, tmp_path: Path, recipe: str = "churn", *overrides: str) -> RunContext:
    from framework.loading import load_recipe

    loaded = load_recipe([f"recipe={recipe}", *overrides], project_dir=project).recipe
    return RunContext(recipe=loaded, project_dir=project, workspace=tmp_path / "ws")


def _step(ctx: RunContext):
    (step,) = [s for s in compile_steps(ctx.recipe, {}) if s.kind == "monitoring.rules"]
    return step


def _targets(board: dict) -> list[tuple[str, dict]]:
    return [(p["title"], t) for p in board["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("recipe", ["churn", "fraud"])
def test_the_dashboard_is_a_grafana_dashboard_of_its_model(project: Path, tmp_path: Path, recipe: str) -> None:
    ctx = _ctx(project, tmp_path, recipe)
    board = dashboard(ctx.recipe)
    assert board["uid"] == f"loom-{recipe}" and board["title"] == f"Loom: {recipe}"
    assert isinstance(board["schemaVersion"], int) and board["panels"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["version"]["query"]["query"] == f'label_values(ray_loom_requests_total{{model="{recipe}"}}, version)'
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] != "row":
            assert panel["type"] == "timeseries" and panel["datasource"]["uid"] == "${datasource}"
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), panel["title"]
    titles = {p["title"] for p in board["panels"]}
    assert {"Requests per second", "Error rate", "Latency quantiles", "Cache hits", "Fallbacks",
            "Feature PSI", "Score PSI", "Traffic share per version"} <= titles
    assert ("Stream lag" in titles) == (ctx.recipe.streaming is not None)
    json.dumps(board, allow_nan=False)  # plain JSON Grafana can read


def test_every_dashboard_query_is_scoped_to_its_model(project: Path, tmp_path: Path) -> None:
    for _, target in _targets(dashboard(_ctx(project, tmp_path).recipe)):
        expr = target["expr"]
        assert scope_to_model(expr, "churn") == expr, expr
        assert all('model="churn"' in s for s in re.findall(r"ray_loom_\w+\{[^}]*\}", expr)), expr


def test_promtool_parses_every_dashboard_query(project: Path, tmp_path: Path, promtool: str) -> None:
    rules = [{"record": f"loom:panel_{i}", "expr": t["expr"].replace("$__rate_interval", "1m")
              .replace("$version", ".*")} for i, (_, t) in enumerate(_targets(dashboard(_ctx(project, tmp_path).recipe)))]
    (tmp_path / "panels.yml").write_text(json.dumps({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", "panels.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_panel_thresholds_are_the_recipes(project: Path, tmp_path: Path) -> None:
    board = dashboard(_ctx(project, tmp_path, "churn", "monitoring.drift.psi_threshold=0.3",
                           "monitoring.slo.max_p99_latency_ms=120").recipe)
    red = {p["title"]: p["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]
           for p in board["panels"] if "thresholds" in p.get("fieldConfig", {}).get("defaults", {})}
    assert red["Feature PSI"] == red["Score PSI"] == 0.3 and red["Latency quantiles"] == 120
    assert red["Error rate"] == 0.02
    no_drift = dashboard(_ctx(project, tmp_path, "churn", "monitoring.drift.enabled=false").recipe)
    assert "Feature PSI" not in {p["title"] for p in no_drift["panels"]}


def test_without_a_receiver_there_is_no_alertmanager_config(project: Path, tmp_path: Path) -> None:
    ctx = _ctx(project, tmp_path)
    out = MonitoringBackend().apply(_step(ctx), ctx)
    assert "alertmanager" not in out
    files = {p.name for p in rules_dir(ctx).iterdir()}
    assert files == {"alerts.yml", "prometheus.yml", "dashboard.json"}
    assert "alerting" not in json.loads(_body(rules_dir(ctx) / "prometheus.yml"))


def _body(path: Path) -> str:
    return path.read_text(encoding="utf-8").split("\n", 1)[1]  # after the header comment


def test_the_alertmanager_config_passes_amtool_and_holds_no_secret(project: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import debian

    monkeypatch.setenv("LOOM_TEST_HOOK_TOKEN", TOKEN)
    ctx = _ctx(project, tmp_path, "churn", HOOK)
    MonitoringBackend().apply(_step(ctx), ctx)
    out = rules_dir(ctx)
    text = (out / "alertmanager.yml").read_text(encoding="utf-8")
    assert TOKEN not in text and TOKEN not in (out / "prometheus.yml").read_text(encoding="utf-8")
    config = json.loads(_body(out / "alertmanager.yml"))
    (hook,) = config["receivers"][0]["webhook_configs"]
    assert hook["url"] == "https://hooks.example/loom" and hook["send_resolved"] is True
    token_file = Path(hook["http_config"]["authorization"]["credentials_file"])
    assert token_file == out / "secrets" / "bearer_token" and token_file.read_text() == TOKEN
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert config["route"]["routes"][0]["matchers"] == ['model="churn"']
    assert config["route"]["group_wait"] == "1500ms"
    prometheus = json.loads(_body(out / "prometheus.yml"))
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    amtool = debian.binary("amtool", "prometheus-alertmanager")
    result = subprocess.run([amtool, "check-config", str(out / "alertmanager.yml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_rotated_token_re_renders_and_a_missing_one_is_an_error(project: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEST_HOOK_TOKEN", TOKEN)
    ctx = _ctx(project, tmp_path, "churn", HOOK)
    step, backend = _step(ctx), MonitoringBackend()
    backend.apply(step, ctx)
    assert backend.observe(step, ctx) == step.fingerprint
    monkeypatch.setenv("LOOM_TEST_HOOK_TOKEN", "rotated-token-0123456789")
    assert backend.observe(step, ctx) is None  # the plan shows the change; apply writes it
    backend.apply(step, ctx)
    assert (rules_dir(ctx) / "secrets" / "bearer_token").read_text() == "rotated-token-0123456789"
    monkeypatch.delenv("LOOM_TEST_HOOK_TOKEN")
    assert backend.observe(step, ctx) == step.fingerprint  # a plan without it proposes nothing
    with pytest.raises(BackendError, match="environment variable LOOM_TEST_HOOK_TOKEN is not set"):
        backend.apply(step, ctx)
    backend.delete(step.address, ctx)
    assert not (rules_dir(ctx) / "secrets").exists()


def test_a_secret_file_is_referenced_where_it_is(project: Path, tmp_path: Path) -> None:
    url_file = project / "hook_url"
    url_file.write_text("https://hooks.example/T000/B000/XXXX")
    os.chmod(url_file, 0o600)
    ctx = _ctx(project, tmp_path, "churn",
               "++monitoring.alertmanager={webhook:{url_secret:{file:hook_url},send_resolved:false}}")
    MonitoringBackend().apply(_step(ctx), ctx)
    out = rules_dir(ctx)
    (hook,) = json.loads(_body(out / "alertmanager.yml"))["receivers"][0]["webhook_configs"]
    assert hook == {"send_resolved": False, "url_file": str(url_file.resolve())}
    assert not (out / "secrets").exists() and "XXXX" not in (out / "alertmanager.yml").read_text()


def test_promtool_accepts_the_rendered_prometheus_config(project: Path, tmp_path: Path, promtool: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEST_HOOK_TOKEN", TOKEN)
    ctx = _ctx(project, tmp_path, "churn", HOOK)
    MonitoringBackend().apply(_step(ctx), ctx)
    result = subprocess.run([promtool, "check", "config", str(rules_dir(ctx) / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr
