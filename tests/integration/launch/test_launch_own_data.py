"""A new user's own data to a live endpoint, as the README's walkthrough says, beside churn.

The domain is built here: loan applicants with two feature views on different cadences (a monthly
snapshot with a string column, daily credit activity), an int64 key, and binary and regression
targets. The recipe is the README's walkthrough block, so the README cannot drift from what works.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
KEY = "test-key-0123456789"
JOBS = {"salaried": 0.92, "self_employed": 0.55, "contract": 0.25, "retired": 0.75}
N = 1000


def walkthrough_recipe() -> str:
    """The recipe block of the README's walkthrough, exactly as written there."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- walkthrough:recipe -->\n```yaml\n(.*?)```", text, re.S)
    assert match, "README.md lost its walkthrough recipe block"
    return match.group(1)


def make_loans_data(out: Path, seed: int = 7) -> None:
    """Applicants (monthly), credit activity (daily) and outcomes, as the walkthrough describes."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    ids = np.arange(1000, 1000 + N, dtype=np.int64)
    jobs = rng.choice(list(JOBS), N)
    income = rng.normal(55, 15, N).round(1)
    util = rng.uniform(0, 1, N)
    snapshots = [pd.DataFrame({"applicant_id": ids, "event_timestamp": now - pd.Timedelta(days=d),
                               "employment": jobs, "income": income + rng.normal(0, 1, N),
                               "age": rng.integers(21, 70, N)}) for d in (75, 45, 15)]
    credit = [pd.DataFrame({"applicant_id": ids, "event_timestamp": now - pd.Timedelta(days=d),
                            "open_loans": rng.poisson(2, N).astype(np.int64),
                            "utilization": np.clip(util + rng.normal(0, 0.05, N), 0, 1)})
              for d in (4, 3, 2, 1)]
    p = np.array([JOBS[j] for j in jobs]) - 0.3 * (util - 0.5)
    repaid = (rng.uniform(0, 1, N) < p).astype(np.int64)
    outcomes = pd.DataFrame({"applicant_id": ids, "event_timestamp": now - pd.Timedelta(hours=6),
                             "repaid": repaid, "amount_repaid": repaid * rng.uniform(1e3, 2e4, N)})
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(snapshots).to_parquet(out / "applicants.parquet", index=False)
    pd.concat(credit).to_parquet(out / "credit.parquet", index=False)
    outcomes.to_parquet(out / "outcomes.parquet", index=False)


class Traffic:
    """One client loop at about ``rps`` requests a second, until stopped; it keeps every status."""

    def __init__(self, url: str, rps: float = 2.0) -> None:
        self.url, self.pause, self.statuses = url, 1 / rps, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(1)
        while not self._stop.is_set():
            status, _, _ = H.call(self.url, {"entities": {"applicant_id": int(rng.integers(1000, 1000 + N))}},
                                  KEY)
            self.statuses.append(status)
            self._stop.wait(self.pause)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _args(port: int, **extra: str) -> list[str]:
    """loans with quick rollouts for a test: 2 s intervals, judged after 4 candidate requests."""
    settings = {
        "serving.http.port": str(port), "serving.num_cpus_per_replica": "0.2",
        "serving.surge_replicas": "0", "serving.cache.enabled": "false",
        "training.model.num_boost_round": "30", "rollout.interval_s": "2", "rollout.steps": "[25,100]",
        "rollout.failure_limit": "1", "rollout.analysis.min_requests": "4",
        "rollout.analysis.max_prediction_psi": "100", "rollout.analysis.max_p99_latency_ms": "2000",
        "++rollout.analysis.max_latency_ratio": "10", "++rollout.analysis.max_inconclusive": "12",
        **extra}
    return ["recipe=loans", *(k if k.startswith("~") else f"{k}={v}" for k, v in settings.items())]


@contextlib.contextmanager
def _cpus_left(free: float):
    """Hold the session Ray's CPUs but ``free`` with an idle actor while the block runs."""
    import ray

    held = float(ray.available_resources().get("CPU", 0.0)) - free
    assert held > 0, ray.available_resources()

    @ray.remote(num_cpus=held)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    ray.get(holder.ready.remote(), timeout=60)
    try:
        yield
    finally:
        ray.kill(holder)


def _bounded(call: Any, timeout_s: float) -> Any:
    """``call()`` in a thread; fails the test (instead of hanging it) if it has not returned."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"still running after {timeout_s} s (waiting for CPUs?)"
    if "error" in result:
        raise result["error"]
    return result["value"]


def _batch_matches_the_api(project: Path, url: str, port: int) -> None:
    """1,000 applicants (10 with an employment override) and one unknown, scored both ways."""
    import pandas as pd

    from framework import api

    ids = list(range(1000, 1000 + N))
    override = [("salaried" if i < 10 else None) for i in range(N)]
    frame = pd.DataFrame({"applicant_id": ids + [99], "employment": override + [None]})
    frame.to_parquet(project / "to_score.parquet", index=False)
    options = api.BatchOptions(input=Path("to_score.parquet"), output=Path("scored.parquet"))
    with _cpus_left(0.6):  # as on a head that serves two models: less than one CPU free
        job = _bounded(lambda: api.batch(_args(port), options=options), timeout_s=240)
    out = pd.read_parquet(project / "scored.parquet")
    assert job["rows"] == len(out) == N + 1 and out["row_id"].tolist() == list(range(N + 1))
    assert job["missing"] == 1 and out.iloc[-1]["missing_features"] and pd.isna(out.iloc[-1]["prediction"])
    missing = pd.read_parquet(job["missing_file"])
    assert missing["row_id"].tolist() == [N]
    for i, applicant in enumerate(ids):
        body = {"entities": {"applicant_id": applicant}}
        if override[i]:
            body["features"] = {"employment": override[i]}
        status, _, online = H.call(url, body, KEY)
        assert status == 200, online
        row = out.iloc[i]
        assert row["probability"] == pytest.approx(online["probability"], abs=1e-6), (i, online)
        assert row["prediction"] == online["prediction"] and row["model_version"] == online["model_version"]
    again = api.batch(_args(port), options=options)
    assert again.get("unchanged") is True
    assert job["predictor"] == {"name": "xgboost", "asked": "xgboost"}
    # batch.predictor: treelite scores with the version's compiled library, checked against
    # XGBoost first (categorical splits included): the same answers.
    fast_options = api.BatchOptions(input=Path("to_score.parquet"), output=Path("scored-fast.parquet"))
    fast = api.batch(_args(port) + ["++batch.predictor=treelite"], options=fast_options)
    assert fast["predictor"]["name"] == "treelite" and fast["rows"] == N + 1
    compiled = pd.read_parquet(project / "scored-fast.parquet")
    np.testing.assert_allclose(compiled["probability"].to_numpy(float), out["probability"].to_numpy(float),
                               atol=1e-5)
    assert compiled["prediction"].tolist()[:N] == out["prediction"].tolist()[:N]


def _steps_applied(project: Path) -> dict[str, Any]:
    from framework.state import WorkspaceState

    return WorkspaceState(project / ".loom").recipe("loans")["steps"]


def test_preflight_catches_each_broken_variant_before_any_step_runs(project, monkeypatch):
    from framework import api
    from framework.errors import LoomError

    (project / "recipes" / "loans.yaml").write_text(walkthrough_recipe())
    make_loans_data(project / "data" / "loans")
    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port = H.free_port()
    broken = {
        "missing file": (["data.sources.credit.path=data/loans/credits.parquet"],
                         ["data.sources.credit.path", "credits.parquet"]),
        "misspelt column": (["~features.views.applicant_profile.fields.income",
                             "+features.views.applicant_profile.fields.incme=float64"],
                            ["incme", "income"]),
        "missing label": (["training.label.column=repayed"], ["training.label.column", "repayed"]),
        "wrong dtype": (["features.views.applicant_profile.fields.age=string"],
                        ["features.views.applicant_profile.fields.age", "string"]),
    }
    for name, (overrides, fragments) in broken.items():
        with pytest.raises(LoomError) as err:
            api.plan(_args(port) + overrides)
        text = str(err.value) if not hasattr(err.value, "render") else err.value.render()
        for fragment in fragments:
            assert fragment in text, (name, text)
    monkeypatch.delenv("LOOM_API_KEY")
    with pytest.raises(LoomError) as err:
        api.plan(_args(port))
    text = err.value.render() if hasattr(err.value, "render") else str(err.value)
    assert "LOOM_API_KEY" in text and "serving.auth.api_keys[0].key" in text and "SecretRef" not in text
    assert _steps_applied(project) == {}  # nothing ran, nothing half-applied


def test_own_data_beside_churn_categorical_contract_rejection_and_a_low_traffic_canary(
        ray_session, project, monkeypatch):
    from ray import serve

    from framework import api
    from framework.backends.ray_serve import traffic
    from framework.errors import BackendError, PlanError
    from framework.rollout import actor
    from framework.rollout.engines import RegistryPromoter
    from framework.state import WorkspaceState

    (project / "recipes" / "loans.yaml").write_text(walkthrough_recipe())
    make_loans_data(project / "data" / "loans")
    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port = H.free_port()
    churn = ["recipe=churn", "rollout=direct", f"serving.http.port={port}",
             "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
             "training.model.num_boost_round=10"]
    try:
        api.apply(api.plan(churn))
        first = api.plan(_args(port))
        api.apply(first)
        url = first.ctx.outputs["serving.deploy"]["url"]
        base = url.split("/v1/")[0]

        # The string feature is a categorical feature: its categories were frozen at training,
        # travel in the slot's contract, and a category sent as a string changes the answer.
        train = first.ctx.outputs["training.train"]
        cats = {f["name"]: f.get("categories") for f in train["contract"]["features"]}
        assert cats["employment"] == sorted(JOBS)
        status, _, described = H.call(f"{base}/v1/models/loans", key=KEY)
        assert status == 200 and described["stable"]["contract"]["task"] == "binary", described
        asks = {job: H.call(url, {"entities": {"applicant_id": 1042},
                                  "features": {"employment": job}}, KEY)[2] for job in JOBS}
        assert all(a["contract"] == 1 and a["model_version"] == "1" for a in asks.values()), asks
        assert asks["salaried"]["probability"] > asks["contract"]["probability"] + 0.15, asks
        assert asks["salaried"]["prediction"] == "will_repay"
        status, _, unknown = H.call(url, {"entities": {"applicant_id": 99}}, KEY)
        assert status == 422 and "no row for applicant_id=99" in unknown["error"]["message"], unknown

        # Batch: the same version, offline features as of now, the same answers as the API.
        _batch_matches_the_api(project, url, port)

        # The task of a served model id does not change under it.
        with pytest.raises(PlanError, match="served by version 1 under contract 1 .*task binary -> "
                                            "regression"):
            api.plan(_args(port, model="xgboost_regression", **{
                "training.label.column": "amount_repaid", "training.gates": "[]", "~serving.labels": ""}))

        # Version 2 fails its canary (no candidate answers within 0.001 ms): it is rejected.
        strict = {"training.model.params.max_depth": "2", "rollout.analysis.max_p99_latency_ms": "0.001"}
        with Traffic(url) as load:
            with pytest.raises(BackendError, match="rolled back"):
                api.apply(api.plan(_args(port, **strict)))
        rollout = WorkspaceState(project / ".loom").rollout("loans")
        assert rollout["status"] == "rolled_back" and rollout["candidate"]["version"] == "2"
        assert all(s == 200 for s in load.statuses), load.statuses
        promoter = RegistryPromoter.for_recipe(first.ctx.recipe, first.ctx.workspace)
        assert promoter.rejection("2") and promoter.champion() == "1"

        # The plan says so, and launching it again is refused until asked.
        again = api.plan(_args(port, **strict))
        assert any("version 2 was rejected" in s.reason for s in again.plan.changes), again.plan
        with pytest.raises(PlanError, match="--retry-rejected"):
            api.apply(again)
        assert traffic.current_user_config("loans")["slots"]["stable"]["version"] == "1"

        # Going back to the first recipe keeps version 1 stable; 2 is never re-canaried.
        back = api.plan(_args(port))
        api.apply(back)
        slots = traffic.current_user_config("loans")["slots"]
        assert slots["stable"]["version"] == "1" and slots["candidate"] is None, slots
        assert promoter.champion() == "1"
        assert WorkspaceState(project / ".loom").rollout("loans")["candidate"]["version"] == "2"

        # Version 3 at 2 requests/s: 25% is ~0.5 candidate requests/s, under min_requests per
        # interval; the analysis accumulates quiet intervals and the canary completes.
        with Traffic(url, rps=2.0) as load:
            api.apply(api.plan(_args(port, **{"training.model.params.max_depth": "5"})))
        final = WorkspaceState(project / ".loom").rollout("loans")
        assert final["status"] == "promoted" and final["candidate"]["version"] == "3", final
        judged = [a for a in final["analyses"] if a["verdict"] == "pass"]
        assert any(a.get("intervals", 1) > 1 for a in judged), final["analyses"]
        assert all(s == 200 for s in load.statuses), load.statuses
        assert promoter.champion() == "3"

        # churn, beside it all along, still answers.
        status, _, body = H.call(f"{base}/v1/models/churn/predictions",
                                 {"entities": {"customer_id": "C000042"}}, KEY)
        assert status == 200 and body["model_id"] == "churn", body
    finally:
        with contextlib.suppress(BackendError):
            actor._stop_actor("loans")
            for model_id in ("churn", "loans"):
                traffic.delete_app(model_id)
            traffic.drop_gateway_if_unused("/")
        serve.shutdown()
