"""The workspace head's dashboard (env.dashboard): its flags, the environment `loom env` prints, and a
running head whose settings are not the recipe's (kept, and said so). No Ray is started here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from framework import api
from framework.backends import ray_cli_env, ray_cluster
from framework.errors import RecipeError
from framework.spec.env import Env


def recipe(**env) -> SimpleNamespace:
    return SimpleNamespace(env=Env(**env))


def test_the_dashboard_listens_on_loopback_at_its_port_or_is_off() -> None:
    assert ray_cluster._dashboard_flags(Env()) == [
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", "--dashboard-port=26382"]
    assert ray_cluster._dashboard_flags(Env(dashboard=False)) == ["--include-dashboard=false"]


def test_a_busy_dashboard_port_refuses_to_start_instead_of_moving(monkeypatch) -> None:
    monkeypatch.setattr(ray_cluster, "port_holder",
                        lambda port: "pid 7 (python)" if port == 26390 else None)
    with pytest.raises(Exception, match=r"port 26390 \(env.dashboard_port\) is already in use by pid 7"):
        ray_cluster._check_ports(recipe(dashboard_port=26390))
    ray_cluster._check_ports(recipe(dashboard=False, dashboard_port=26390))  # off: not checked


def started(workspace: Path, monkeypatch, dashboard: int | None, cpus: float = 2, metrics: int = 8090,
            ingress: str = "haproxy") -> None:
    """A workspace whose head `loom up` recorded with these settings, and that runs."""
    ray_dir = workspace / "ray"
    ray_dir.mkdir(parents=True)
    (ray_dir / "address").write_text("127.0.0.1:26379\n")
    (ray_dir / "num_cpus").write_text(f"{cpus}\n")
    (ray_dir / "metrics_port").write_text(f"{metrics}\n")
    (ray_dir / "ingress").write_text(f"{ingress}\n")
    if dashboard:
        (ray_dir / "dashboard_port").write_text(f"{dashboard}\n")
    monkeypatch.setattr(ray_cluster, "_pids", lambda tmp: [123])
    monkeypatch.setattr(ray_cluster, "listening", lambda address: True)


def test_a_head_started_as_the_recipe_asks_differs_in_nothing(tmp_path, monkeypatch) -> None:
    started(tmp_path, monkeypatch, dashboard=26382)
    assert ray_cluster.settings_differ(recipe(ray_num_cpus=2), tmp_path) == []
    assert ray_cluster.status(tmp_path)["dashboard_url"] == "http://127.0.0.1:26382"


@pytest.mark.parametrize("recorded, asked, expected", [
    ({"dashboard": None}, {}, "env.dashboard: the running head has no dashboard, the recipe asks for port 26382"),
    ({"dashboard": 26382}, {"dashboard": False}, "env.dashboard: the running head has its dashboard on port 26382, the recipe asks for none"),
    ({"dashboard": 26382}, {"dashboard_port": 26390}, "the recipe asks for port 26390"),
    ({"dashboard": 26382, "cpus": 1}, {"ray_num_cpus": 2}, "env.ray_num_cpus: the running head has 1 CPUs, the recipe asks for 2"),
    ({"dashboard": 26382, "metrics": 8091}, {}, "env.metrics_export_port: the running head exports metrics on 8091"),
], ids=["dashboard-asked", "dashboard-off", "dashboard-port", "cpus", "metrics"])
def test_a_running_head_with_other_settings_is_kept_and_said_so(tmp_path, monkeypatch, recorded,
                                                                asked, expected) -> None:
    started(tmp_path, monkeypatch, **recorded)
    [line] = ray_cluster.settings_differ(recipe(**asked), tmp_path)
    assert expected in line and "`loom down` then `loom up` restarts it" in line
    out = ray_cluster.up(recipe(**asked), tmp_path)   # a running head: nothing is restarted
    assert out["running"] and out["settings_differ"] == [line]


def test_loom_env_names_the_head_the_token_file_and_the_dashboard(tmp_path, monkeypatch) -> None:
    started(tmp_path, monkeypatch, dashboard=26382)
    found = ray_cli_env.cli_env(recipe(), tmp_path)
    assert found["notes"] == []
    assert found["variables"] == {
        "RAY_ADDRESS": "127.0.0.1:26379", "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(tmp_path.resolve() / "ray" / "auth_token"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_DASHBOARD_ADDRESS": "http://127.0.0.1:26382",
        "RAY_API_SERVER_ADDRESS": "http://127.0.0.1:26382"}


def test_loom_env_for_a_head_without_dashboard_says_what_cannot_reach_it(tmp_path, monkeypatch) -> None:
    started(tmp_path, monkeypatch, dashboard=None)
    found = ray_cli_env.cli_env(recipe(), tmp_path)
    assert "RAY_DASHBOARD_ADDRESS" not in found["variables"]
    assert any("the running head has no dashboard" in n for n in found["notes"])
    assert any("`serve` and `ray job` cannot reach this head" in n for n in found["notes"])


def test_loom_env_before_loom_up_and_for_an_external_cluster(tmp_path) -> None:
    found = ray_cli_env.cli_env(recipe(dashboard_port=26390), tmp_path)
    assert found["variables"]["RAY_DASHBOARD_ADDRESS"] == "http://127.0.0.1:26390"
    assert "is not running: `loom up` starts it" in found["notes"][0]
    external = ray_cli_env.cli_env(recipe(ray_address="ray://10.0.0.5:10001"), tmp_path)
    assert external["variables"] == {"RAY_ADDRESS": "ray://10.0.0.5:10001"}


@pytest.mark.parametrize("port", ["26380", "12000", "8090", "8000"])
def test_a_dashboard_port_that_collides_is_refused_at_validate(port: str) -> None:
    with pytest.raises(RecipeError, match="The dashboard port collides") as err:
        api.validate(["recipe=churn", f"env.dashboard_port={port}", "serving.http.port=8000"])
    assert "env.dashboard_port" in str(err.value.render())
    api.validate(["recipe=churn", f"env.dashboard_port={port}", "serving.http.port=8000",
                  "env.dashboard=false"])  # no dashboard: the port is not used
