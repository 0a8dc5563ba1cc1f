"""What serves a recipe's model, as the workspace state records it: the stable version, its
contract, and a candidate its rollout rejected. Plain JSON reads; no engine is imported.

Two plan-time rules come from it:

- **A model id keeps its contract.** The recipe's task and typed feature list must match the
  contract of the version serving as stable, unless the recipe starts a new major contract
  (``registry.contract``). Otherwise clients of the id would get another kind of answer.
- **Rejected stays rejected.** When the latest rollout rolled back the very version this recipe
  registers, the plan says so (never ``No changes.``) and applying it needs ``--retry-rejected``.
"""

from __future__ import annotations

from typing import Any

from framework.compile.contract import Contract, differences, parse, recipe_contract
from framework.compile.plan import Plan
from framework.errors import PlanError
from framework.spec import Recipe

REJECTED_STATUSES = ("rolled_back",)
#: How a plan's reason starts when the head that served the recipe is gone (``serving_lost``).
LOST = "nothing serves:"
#: Step kinds that put a version into serving; a rejected version's are shown again.
SERVING_KINDS = ("serving.deploy", "rollout.step")


def serving_stable(doc: dict[str, Any], recipe: Recipe) -> tuple[str, Contract | None] | None:
    """The version that serves as stable and its contract: the newer of the deploy's record and
    the rollout's last desired state. None when this recipe never deployed."""
    section = doc.get("recipes", {}).get(recipe.name) or {}
    records = [r for addr, r in (section.get("serving") or {}).items()
               if addr.startswith(SERVING_KINDS) and r.get("slots")]
    best: tuple[float, str, Any] | None = None
    for record in records:
        stable = (record.get("slots") or {}).get("stable")
        if stable:
            contract = (record.get("contracts") or {}).get(str(stable))
            best = max(best or (-1.0, "", None), (float(record.get("at", 0)), str(stable), contract),
                       key=lambda t: t[0])
    rollout = (doc.get("rollouts") or {}).get(recipe.app_name) or {}
    slots = ((rollout.get("user_config") or {}).get("slots") or {})
    stable = slots.get("stable") or {}
    if stable.get("version") and float(rollout.get("updated_at", 0)) >= (best or (-1.0,))[0]:
        best = (float(rollout.get("updated_at", 0)), str(stable["version"]), stable.get("contract"))
    if best is None:
        return None
    return best[1], parse(best[2])


def check_contract(recipe: Recipe, doc: dict[str, Any], recipe_file: str | None) -> None:
    """Refuse a recipe whose task or features break the contract of the version serving.

    Raises:
        PlanError: naming the recipe file and keys, the serving version and its contract, and the
            two ways out (another model id, or a new major contract).
    """
    served = serving_stable(doc, recipe)
    if served is None or served[1] is None:
        return
    version, contract = served
    mine = recipe_contract(recipe)
    if mine.major > contract.major:
        return  # a new major contract: each version answers in its own
    changes = differences(contract, mine)
    if not changes:
        return
    where = recipe_file or f"recipe {recipe.name!r}"
    keys = []
    if any(c.startswith(("task", "num_class")) for c in changes):
        keys.append("training.model.objective")
    if any(c.startswith("feature") for c in changes):
        keys.append("features.service.features")
    raise PlanError(
        f"{where}: {' / '.join(keys)}: model '{recipe.model_id}' is served by version {version} "
        f"under contract {contract.major} ({contract.task}, features "
        f"{', '.join(f'{f.name}:{f.type}' for f in contract.features)}); this recipe changes "
        f"{'; '.join(changes)}. A model id keeps its contract, so its clients keep getting the "
        f"answers they parse. Give the new model its own registry.model_name, or start a new "
        f"major contract: set registry.contract: {contract.major + 1} in the recipe (or override "
        f"+registry.contract={contract.major + 1}); each version then answers in its own "
        "contract, and every answer names it."
    )


def rejected(recipe: Recipe, doc: dict[str, Any], plan: Plan) -> dict[str, Any] | None:
    """The latest rollout's rejection of this recipe's own version, or None.

    Only when the plan registers the same version again (its ``registry.register`` step is
    unchanged) and the rollout that rolled it back is the latest for the model.
    """
    rollout = (doc.get("rollouts") or {}).get(recipe.app_name) or {}
    if rollout.get("status") not in REJECTED_STATUSES:
        return None
    register = next((s for s in plan.steps if s.kind == "registry.register"), None)
    if register is None or register.action != "no-op":
        return None
    section = doc.get("recipes", {}).get(recipe.name) or {}
    entry = (section.get("steps") or {}).get(register.address) or {}
    version = str((entry.get("outputs") or {}).get("version") or "")
    candidate = str(((rollout.get("candidate") or {}).get("version")) or "")
    if not version or version != candidate:
        return None
    return {"version": version, "stable": str((rollout.get("stable") or {}).get("version") or ""),
            "reason": rollout.get("reason") or "its analysis failed",
            "rollout_id": rollout.get("rollout_id")}


def mark_rejected(plan: Plan, found: dict[str, Any]) -> Plan:
    """The plan with the rejected version's serving steps shown as changes, saying why."""
    return mark_serving(plan, f"version {found['version']} was rejected by its rollout "
                              f"({found['reason']}); stable {found['stable'] or '-'} serves. "
                              "`--retry-rejected` rolls it out again")


def serving_lost(recipe: Recipe, doc: dict[str, Any], head: dict[str, Any]) -> str | None:
    """Why nothing serves what the state says is deployed, or None.

    ``head``: the workspace head's ``ray_cluster.status`` (``running``, ``started_at``). Serve
    apps live in the head: when it is not running, or started after the recipe's last deploy
    (``loom down`` then ``loom up``, a crash, a reboot), the state's record is history.
    """
    section = doc.get("recipes", {}).get(recipe.name) or {}
    deployed = [float(r.get("at", 0)) for addr, r in (section.get("serving") or {}).items()
                if addr.startswith("serving.deploy")]
    if not deployed:
        return None
    again = "applying deploys the recipe's version again"
    if not head.get("running"):
        return f"{LOST} the workspace's Ray head is not running; {again}"
    started = head.get("started_at")
    if started and float(started) > max(deployed):
        return (f"{LOST} the workspace's Ray head started at {_iso(float(started))}, "
                f"after the last deploy at {_iso(max(deployed))}; {again}")
    return None


def mark_serving(plan: Plan, why: str) -> Plan:
    """The plan with its unchanged serving steps shown as updates, saying why."""
    steps = tuple(
        s.model_copy(update={"action": "update", "reason": why})
        if s.kind.startswith(SERVING_KINDS) and s.action == "no-op" else s
        for s in plan.steps)
    return plan.model_copy(update={"steps": steps})


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
