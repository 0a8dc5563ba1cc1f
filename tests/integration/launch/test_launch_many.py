"""Many recipes in one project on real engines: launch three, each answers, destroy one, the rest stay."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
BODIES = {"churn": {"entities": {"customer_id": "C000042"}},
          "fraud": {"entities": {"account_id": 100042}},
          "retention": {"entities": {"customer_id": "C000042"}}}
#: The reference architecture's API example, exactly as written there.
REFERENCE = {"model_id": "churn", "features": {"customer_id": "12345", "tenure_months": 24,
                                               "monthly_charges": 89.99}}


def _team_templates(root: Path) -> Path:
    """A team's own template folder with a lean serving option the third recipe picks."""
    team = root / "team-templates"
    (team / "serving").mkdir(parents=True)
    standard = (Path(__file__).resolve().parents[3] / "conf" / "serving" / "standard.yaml").read_text()
    (team / "serving" / "lean.yaml").write_text(
        standard.replace("num_cpus_per_replica: 0.5", "num_cpus_per_replica: 0.2")
        .replace("surge_replicas: 1", "surge_replicas: 0"))
    return team


def _retention(project: Path) -> None:
    """A third recipe in churn's Feast project: it shares churn's entity and view (alike)."""
    text = (project / "recipes" / "churn.yaml").read_text()
    text = (text.replace("name: churn\n", "name: retention\n")
            .replace("registry:\n  model_name: churn", "registry:\n  model_name: retention")
            .replace("features:\n  entities:", "features:\n  project: churn\n  entities:")
            .replace("  - serving: standard\n", "  - serving: lean\n")
            .replace("name: churn_model_v1", "name: retention_model_v1"))
    (project / "recipes" / "retention.yaml").write_text(text)


def test_three_recipes_live_side_by_side_and_destroying_one_leaves_the_others(
        ray_session, project, monkeypatch):
    from ray import serve

    from framework import api
    from framework.backends.ray_serve import traffic
    from framework.errors import BackendError

    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port, team = H.free_port(), _team_templates(project)
    _retention(project)
    common = ["rollout=direct", f"serving.http.port={port}", "training.model.num_boost_round=10"]
    args = {"churn": ["recipe=churn", *common, "serving.num_cpus_per_replica=0.2",
                      "serving.surge_replicas=0", "++serving.missing_features=model"],
            "fraud": ["recipe=fraud", *common, "serving.num_cpus_per_replica=0.2",
                      "serving.surge_replicas=0"],
            "retention": ["recipe=retention", *common]}
    templates = (str(team),)
    try:
        urls = {}
        for name, a in args.items():
            planned = api.plan(a, templates)
            assert not [s for s in planned.plan.steps if s.action == "delete"], name
            api.apply(planned)
            urls[name] = planned.ctx.outputs["serving.deploy"]["url"]
        base = urls["churn"].split("/v1/")[0]
        _all_answer(base, urls, ["churn", "fraud", "retention"])
        for name, a in args.items():
            assert not api.plan(a, templates).plan.has_changes, name

        status, _, body = H.call(f"{base}/v1/predictions", REFERENCE, KEY)
        assert status == 200, body
        assert {"prediction", "probability", "model_version", "latency_ms"} <= set(body)
        assert body["missing_features"] == ["contract_months", "support_calls", "payment_delay_days"]

        destroy = api.plan_destroy(["recipe=retention"], templates)
        reasons = {s.address: s.reason for s in destroy.plan.steps}
        assert "still uses it" in reasons["feast.entity.customer"]
        api.destroy(destroy)
        _all_answer(base, urls, ["churn", "fraud"])  # churn's shared Feast objects still serve
        status, _, gone = H.call(f"{base}/v1/predictions", {"model_id": "retention",
                                                            **BODIES["retention"]}, KEY)
        assert status == 404, gone
        for name in ("churn", "fraud"):
            assert not api.plan(args[name], templates).plan.has_changes, name
        assert {s.action for s in api.plan(args["retention"], templates).plan.steps} == {"create"}
    finally:
        with contextlib.suppress(BackendError):  # Serve never started: nothing to remove
            for model_id in ("churn", "fraud", "retention"):
                traffic.delete_app(model_id)
            traffic.drop_gateway_if_unused("/")
        serve.shutdown()


def _all_answer(base: str, urls: dict[str, str], names: list[str]) -> None:
    for name in names:
        status, _, direct = H.call(urls[name], BODIES[name], KEY)
        assert status == 200 and direct["model_id"] == name and not direct["degraded"], direct
        status, _, routed = H.call(f"{base}/v1/predictions", {"model_id": name, **BODIES[name]}, KEY)
        assert status == 200 and routed["probability"] == direct["probability"], routed
    status, _, listed = H.call(f"{base}/v1/models", key=KEY)
    assert status == 200 and sorted(m["model_id"] for m in listed["models"]) == sorted(names)
