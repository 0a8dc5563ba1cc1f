"""Diffs desired steps against observed fingerprints: create, update, delete or no-op per step."""

from __future__ import annotations

from framework.compile.plan import Plan, Step


#: Step kinds in the order a plan applies them; deletes run in the reverse order.
KIND_ORDER = ("feast.entity", "feast.view", "feast.service", "feast.materialize", "training.dataset",
              "training.tune", "training.train", "training.gates", "registry.register",
              "serving.deploy", "rollout.step", "monitoring.rules")


def delete_order(owned: dict[str, str]) -> list[tuple[str, str]]:
    """``owned`` (address → kind) in the order to delete: dependents before what they depend on."""
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(owned.items(), key=lambda item: (-rank.get(item[1], len(rank)), item[0]))


def decide(step: Step, observed: str | None) -> Step:
    """The step with its action and reason set from what is observed."""
    if observed is None:
        action, reason = "create", "not applied yet"
    elif observed == step.fingerprint:
        action, reason = "no-op", "up to date"
    else:
        action, reason = "update", "inputs changed"
    return step.model_copy(update={"action": action, "observed_fingerprint": observed, "reason": reason})


def diff(plan: Plan, observed: dict[str, str | None], owned: dict[str, str]) -> Plan:
    """Set every step's action; ``owned`` (address → kind) that the plan no longer has become deletes.

    A changed step changes every downstream fingerprint (fingerprints include upstream ones), so a
    changed data file re-runs materialize, dataset, training and what follows, and nothing else.
    """
    steps = [decide(s, observed.get(s.address)) for s in plan.steps]
    desired = {s.address for s in plan.steps}
    deletes = [
        Step(address=addr, kind=kind, fingerprint="", action="delete",
             observed_fingerprint=observed.get(addr), reason="no longer in the recipe")
        for addr, kind in delete_order(owned)
        if addr not in desired
    ]
    return plan.model_copy(update={"steps": tuple(steps + deletes)})
