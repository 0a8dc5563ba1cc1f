"""Recipe → desired steps. Pure: no I/O, no heavy imports; data fingerprints are passed in."""

from __future__ import annotations

from typing import Any

from framework import __version__
from framework.compile.fingerprint import fingerprint
from framework.compile.plan import Plan, Step
from framework.spec import Recipe
from framework.spec.rollout import BlueGreen, Canary

#: How monitoring rules are rendered; bumped when the rendering changes (2: every Loom selector
#: is scoped to its model; 3: generated slo/drift rules, dashboard, Alertmanager config), so files
#: written by an older Loom are re-rendered.
RULES_RENDERING = 3


class _Builder:
    """Collects steps in order; each step's fingerprint covers its own inputs and its upstreams'."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._fp: dict[str, str] = {}

    def add(self, address: str, kind: str, inputs: Any, depends_on: list[str], **attrs: Any) -> str:
        fp = fingerprint(kind, inputs, [self._fp[d] for d in depends_on])
        self._fp[address] = fp
        self.steps.append(
            Step(address=address, kind=kind, fingerprint=fp, depends_on=tuple(depends_on), attrs=attrs)
        )
        return address


def _section(model: Any) -> Any:
    return model.model_dump(mode="json")


def _view_section(v: Any) -> Any:
    """A view's fingerprint input; ``push`` counts only when on, so views that never push keep
    the fingerprints they had before views could push (no re-apply and retrain on upgrade)."""
    section = _section(v)
    if not section.get("push"):
        section.pop("push", None)
    return section


def _source_section(source: Any) -> Any:
    """A source's fingerprint input without its ``checks``: they guard training and change no
    Feast object, so adding one neither re-applies the view nor retrains."""
    section = _section(source)
    section.pop("checks", None)
    return section


def _feature_steps(b: _Builder, r: Recipe, data_fps: dict[str, str]) -> tuple[list[str], str, str]:
    project = r.project
    entities = {
        name: b.add(f"feast.entity.{name}", "feast.entity", [project, _section(e)], [],
                    name=name, join_keys=e.join_keys, value_type=e.value_type)
        for name, e in r.features.entities.items()
    }
    views = []
    for name, v in r.features.views.items():
        source = r.data.sources[v.source]
        views.append(b.add(
            f"feast.view.{name}", "feast.view", [project, _view_section(v), _source_section(source)],
            [entities[e] for e in v.entities],
            name=name, source=v.source, ttl_s=v.ttl_s, online=v.online, push=v.push,
            fields=list(v.fields),
        ))
    svc = r.features.service
    service = b.add(f"feast.service.{svc.name}", "feast.service", [project, _section(svc)], views,
                    name=svc.name, features=[f"{v}:{f}" for v, f in r.feature_refs()])
    online = [n for n, v in r.features.views.items() if v.online]
    mat_data = {r.features.views[n].source: data_fps.get(r.features.views[n].source) for n in online}
    materialize = b.add(
        "feast.materialize", "feast.materialize",
        [_section(r.features.store.online), mat_data],
        [f"feast.view.{n}" for n in online], views=online, store=r.features.store.online.type,
    )
    label = r.training.label
    used_sources = sorted({r.features.views[v].source for v, _ in r.feature_refs()} | {label.source})
    dataset = b.add(
        "training.dataset", "training.dataset",
        [_section(label), _section(r.features.store.offline), {s: data_fps.get(s) for s in used_sources}],
        [service], label=f"{label.source}.{label.column}", features=len(r.feature_refs()),
        offline_store=r.features.store.offline.type,
    )
    return views, materialize, dataset


def _training_steps(b: _Builder, r: Recipe, dataset: str) -> str:
    t = r.training
    upstream = [dataset]
    if t.tuning is not None:
        upstream.append(b.add(
            "training.tune", "training.tune",
            [_section(t.model), _section(t.split), _section(t.scaling), _section(t.tuning)], [dataset],
            trials=t.tuning.num_samples, metric=t.tuning.metric, mode=t.tuning.mode,
            scheduler=t.tuning.scheduler, search=sorted(t.tuning.search_space),
        ))
    train = b.add(
        "training.train", "training.train",
        [_section(t.model), _section(t.split), _section(t.scaling)], upstream,
        model=t.model.type, objective=t.model.objective, rounds=t.model.num_boost_round,
        workers=t.scaling.num_workers, params=dict(t.model.params),
    )
    gates = b.add("training.gates", "training.gates", [[_section(g) for g in t.gates]], [train],
                  gates=[_gate_text(g) for g in t.gates])
    return b.add("registry.register", "registry.register",
                 [r.model_id, _section(r.registry)], [gates],
                 model_name=r.model_id, alias=r.registry.candidate_alias)


def _gate_text(g: Any) -> str:
    parts = [f">= {g.min}" if g.min is not None else "", f"<= {g.max}" if g.max is not None else ""]
    return f"{g.metric} " + " and ".join(p for p in parts if p)


def _serving_steps(b: _Builder, r: Recipe, register: str, materialize: str) -> None:
    s = r.serving
    # The replicas read monitoring.enabled, .drift and .log (builder args): a change redeploys them.
    m = r.monitoring
    inputs = [r.model_id, _section(s)] + (
        [m.drift.replica_settings() if m.drift.enabled else {"drift": False}, _section(m.log)]
        if m.enabled else [{"metrics": False}])
    deploy = b.add(
        "serving.deploy", "serving.deploy", inputs, [register, materialize],
        app=r.model_id, route=f"{s.route_prefix.rstrip('/')}/v1/models/{r.model_id}/predictions",
        replicas=s.autoscaling.model_dump() if s.autoscaling else s.replicas,
        host=s.http.host, port=s.http.port,
    )
    prev = deploy
    for address, inputs, attrs in rollout_targets(r.rollout, drift_gate(r)):
        prev = b.add(address, "rollout.step", inputs, [prev], **attrs)
    if r.monitoring.enabled:
        # Rules depend on the model id and the monitoring section only: a new model version or a
        # serving change does not re-render them, nor does where rollouts read analyses from.
        rules = {k: v for k, v in _section(r.monitoring).items() if k != "prometheus_url"}
        b.add("monitoring.rules", "monitoring.rules", [r.model_id, rules, RULES_RENDERING], [],
              alerts=r.monitoring.alert_names())


def drift_gate(r: Recipe) -> dict[str, Any] | None:
    """``monitoring.on_drift`` for the rollout controller; None when drift only alerts.

    The gate reads the rollout's own samples against the candidate's profile, not the replicas'
    drift bins, so it holds with ``monitoring.drift.enabled: false`` too."""
    m = r.monitoring
    if m.on_drift == "alert" or not m.enabled:  # check_on_drift refuses the second at validate
        return None
    return {"action": m.on_drift, "psi_threshold": m.drift.psi_threshold}


def rollout_targets(ro: Any, drift: dict[str, Any] | None = None) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """The rollout's target states as ``(address, fingerprint inputs, attrs)``, in order.

    The one author of a rollout's phases: the plan carries them as ``rollout.step`` steps and the
    controller reads them from there (``rollout.phases.spec_from_steps``). ``drift``: the
    ``drift_gate`` each analysis applies, in the first step's attrs and every step's inputs.
    """
    targets = _targets(ro)
    if drift is not None and targets[0][2]["strategy"] != "direct":
        targets = [(a, inputs + [drift], {**attrs, "drift": drift}) for a, inputs, attrs in targets]
    return targets


def _targets(ro: Any) -> list[tuple[str, list[Any], dict[str, Any]]]:
    if isinstance(ro, Canary):
        return [(f"rollout.canary.step{i}",
                 [weight, ro.interval_s, _section(ro.analysis), ro.failure_limit, ro.shadow_percent],
                 {"strategy": "canary", "weight": weight, "hold_s": ro.interval_s,
                  "shadow_percent": ro.shadow_percent, "analysis": _section(ro.analysis),
                  "failure_limit": ro.failure_limit})
                for i, weight in enumerate(ro.steps, start=1)]
    if isinstance(ro, BlueGreen):
        phases = [("shadow", 0, ro.interval_s), ("switch", 100, ro.bake_time_s),
                  ("retire_blue", 100, 0)]
        return [(f"rollout.blue_green.{phase}",
                 [phase, weight, hold, ro.shadow_percent, _section(ro.analysis), ro.failure_limit],
                 {"strategy": "blue_green", "phase": phase, "weight": weight, "hold_s": hold,
                  "shadow_percent": ro.shadow_percent if phase == "shadow" else 0,
                  "analysis": _section(ro.analysis), "failure_limit": ro.failure_limit})
                for phase, weight, hold in phases]
    return [("rollout.direct", ["direct"], {"strategy": "direct", "weight": 100})]


def compile_steps(recipe: Recipe, data_fingerprints: dict[str, str]) -> list[Step]:
    """The desired steps of ``recipe`` in apply order, each with its fingerprint (action 'create')."""
    b = _Builder()
    _, materialize, dataset = _feature_steps(b, recipe, data_fingerprints)
    register = _training_steps(b, recipe, dataset)
    _serving_steps(b, recipe, register, materialize)
    return b.steps


def compile_plan(
    recipe: Recipe, recipe_dict: dict[str, Any], data_fingerprints: dict[str, str], project_dir: str
) -> Plan:
    """The undiffed plan: every step marked 'create'. ``execute.diff`` sets actions from observed state."""
    return Plan(
        loom_version=__version__,
        recipe_name=recipe.name,
        recipe_fingerprint=fingerprint(recipe_dict),
        recipe=recipe_dict,
        project_dir=project_dir,
        steps=tuple(compile_steps(recipe, data_fingerprints)),
    )
