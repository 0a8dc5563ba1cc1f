"""The rollout as data: phases with target weights, hold times and gates, read from plan steps."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Sequence

from framework.errors import PlanError
from framework.spec.rollout import Analysis, BlueGreen, Canary

Gate = Literal["pass", "time"]


@dataclass(frozen=True)
class Phase:
    """One target state the controller moves to and holds.

    ``gate`` says when it ends: "pass" at the first passing analysis once ``hold_s`` has passed
    (canary steps, blue-green shadow), "time" when ``hold_s`` has passed without a rollback
    (blue-green bake after the switch). ``role`` is the sample role judged: candidate or shadow.
    """

    address: str
    weight: float
    shadow_percent: float
    hold_s: float
    gate: Gate
    role: str


@dataclass(frozen=True)
class RolloutSpec:
    """The whole rollout: its phases in order, then promotion at ``promote_address``."""

    strategy: str
    phases: tuple[Phase, ...]
    interval_s: float
    analysis: Analysis
    failure_limit: int
    promote_address: str
    fingerprints: tuple[tuple[str, str], ...] = ()
    #: ``monitoring.on_drift`` beyond alerting: ``{"action", "psi_threshold"}`` (None: alert only).
    drift: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the state file."""
        d = asdict(self)
        d["analysis"] = self.analysis.model_dump(mode="json")
        d["fingerprints"] = dict(self.fingerprints)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RolloutSpec":
        """Inverse of ``to_dict``."""
        return cls(
            strategy=d["strategy"], phases=tuple(Phase(**p) for p in d["phases"]),
            interval_s=float(d["interval_s"]), analysis=Analysis.model_validate(d["analysis"]),
            failure_limit=int(d["failure_limit"]), promote_address=d["promote_address"],
            fingerprints=tuple(sorted(d.get("fingerprints", {}).items())), drift=d.get("drift"),
        )

    def addresses(self) -> list[str]:
        """The plan addresses this rollout covers, in order."""
        own = [p.address for p in self.phases]
        return own + ([self.promote_address] if self.promote_address not in own else [])

    def step_index(self, address: str) -> int:
        """Phase index of a plan address; the promotion step is ``len(phases)``."""
        for i, phase in enumerate(self.phases):
            if phase.address == address:
                return i
        if address == self.promote_address:
            return len(self.phases)
        raise PlanError(f"{address}: not a step of this {self.strategy} rollout.")


def spec_from_steps(steps: Sequence[Any]) -> RolloutSpec:
    """Build the spec from the compiled ``rollout.step`` steps (Step objects) of one plan.

    Canary steps become "pass" phases. Blue-green's shadow phase is a "pass" phase judging shadow
    samples, its switch phase a "time" phase of ``bake_time_s`` judging the candidate, and
    ``retire_blue`` is the promotion.
    """
    steps = [s for s in steps if s.kind == "rollout.step"]
    if not steps:
        raise PlanError("The plan has no rollout.step steps; nothing to roll out.")
    strategy = steps[0].attrs["strategy"]
    if strategy == "canary":
        return _canary(steps)
    if strategy == "blue_green":
        return _blue_green(steps)
    raise PlanError(
        f"{steps[0].address}: strategy {strategy!r} has no controller; "
        "only canary and blue_green roll out progressively (direct is a plain deploy)."
    )


def _canary(steps: list[Any]) -> RolloutSpec:
    a = steps[0].attrs
    phases = tuple(
        Phase(address=s.address, weight=float(s.attrs["weight"]),
              shadow_percent=float(s.attrs.get("shadow_percent", 0.0)),
              hold_s=float(s.attrs["hold_s"]), gate="pass", role="candidate")
        for s in steps
    )
    return RolloutSpec(
        strategy="canary", phases=phases, interval_s=float(a["hold_s"]),
        analysis=Analysis.model_validate(a["analysis"]), failure_limit=int(a["failure_limit"]),
        promote_address=steps[-1].address, fingerprints=_fps(steps), drift=a.get("drift"),
    )


def _blue_green(steps: list[Any]) -> RolloutSpec:
    by_phase = {s.attrs["phase"]: s for s in steps}
    missing = {"shadow", "switch", "retire_blue"} - set(by_phase)
    if missing:
        raise PlanError(f"rollout.blue_green: the plan lacks phase(s) {sorted(missing)}.")
    shadow, switch = by_phase["shadow"], by_phase["switch"]
    interval = float(shadow.attrs["hold_s"])
    phases = (
        Phase(address=shadow.address, weight=0.0,
              shadow_percent=float(shadow.attrs["shadow_percent"]), hold_s=interval,
              gate="pass", role="shadow"),
        Phase(address=switch.address, weight=100.0, shadow_percent=0.0,
              hold_s=float(switch.attrs["hold_s"]), gate="time", role="candidate"),
    )
    return RolloutSpec(
        strategy="blue_green", phases=phases, interval_s=interval,
        analysis=Analysis.model_validate(shadow.attrs["analysis"]),
        failure_limit=int(shadow.attrs["failure_limit"]),
        promote_address=by_phase["retire_blue"].address, fingerprints=_fps(steps),
        drift=shadow.attrs.get("drift"),
    )


def _fps(steps: list[Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((s.address, s.fingerprint) for s in steps))


def spec_from_recipe(rollout: Canary | BlueGreen) -> RolloutSpec:
    """The spec of a recipe's ``rollout`` section, through the compiler (no plan fingerprints).

    For callers without a plan (benchmarks, tests); ``loom launch`` reads the plan's steps.
    """
    from framework.compile.compiler import rollout_targets
    from framework.compile.plan import Step

    steps = [Step(address=address, kind="rollout.step", fingerprint="", attrs=attrs)
             for address, _, attrs in rollout_targets(rollout)]
    return replace(spec_from_steps(steps), fingerprints=())
