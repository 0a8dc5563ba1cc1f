"""``loom destroy``: the plan that removes one recipe from the workspace, like ``terraform destroy``.

Every step the recipe's state holds becomes a delete, in reverse apply order. Feast objects another
recipe still uses stay in Feast; the model registry's runs and versions stay as history unless the
registry is purged; other recipes' steps are never touched.
"""

from __future__ import annotations

from framework.compile.plan import Plan, Step
from framework.execute.diff import delete_order
from framework.execute.state import State

#: Kinds whose engine objects are history: kept by ``loom destroy`` unless ``--purge-registry``.
HISTORY_KINDS = frozenset({"training.tune", "training.train", "training.gates", "registry.register"})


def destroy_plan(compiled: Plan, state: State, feast_project: str, purge_registry: bool) -> Plan:
    """``compiled`` (for its recipe metadata) with one delete per step the recipe has applied."""
    steps = []
    kinds = {address: entry.get("kind", "") for address, entry in state.entries.items()}
    for address, kind in delete_order(kinds):
        entry = state.entries[address]
        kept = state.kept_reason(address, feast_project)
        if kept:
            reason = kept
        elif kind in HISTORY_KINDS and not purge_registry:
            reason = "forgotten; runs and versions stay in the registry (--purge-registry deletes)"
        else:
            reason = "removed with the recipe"
        steps.append(Step(address=address, kind=kind, fingerprint="", action="delete",
                          observed_fingerprint=entry.get("fingerprint"), reason=reason))
    return compiled.model_copy(update={"steps": tuple(steps)})
