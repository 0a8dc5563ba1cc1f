"""The ``rollout`` section: how a new model version replaces the one in production."""

from typing import Annotated, Literal, Union

from pydantic import Field

from framework.spec.base import Spec


class Analysis(Spec):
    """Thresholds the candidate must meet against the stable version at every analysis."""

    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest share of failed candidate requests (0..1)."
    )
    max_p99_latency_ms: float = Field(
        default=250.0, gt=0,
        description="Highest candidate p99 latency, in milliseconds. The p99 is by nearest rank "
        "over the window's requests, and never one request alone: below 100 requests it is the "
        "second slowest, so a single straggler does not fail a window.",
    )
    max_latency_ratio: float = Field(
        default=1.5, gt=0,
        description="Highest candidate p99 / stable p99 (each as in max_p99_latency_ms; p99s "
        "under 2 ms count as 2 ms, so sub-millisecond noise makes no ratio).",
    )
    max_prediction_psi: float = Field(
        default=0.2, ge=0, description="Highest PSI between candidate and stable score distributions."
    )
    min_requests: int = Field(
        default=50, ge=1,
        description="Candidate requests (shadow requests in a blue-green shadow phase) an analysis "
        "needs before it judges, a count. An interval with fewer is inconclusive and its samples "
        "are kept: the next analysis judges the quiet intervals in a row plus the new one, "
        "candidate and stable samples alike, as soon as they hold min_requests together.",
    )
    max_inconclusive: int = Field(
        default=10, ge=0,
        description="Quiet intervals in a row a step may accumulate without their requests "
        "reaching min_requests together before the rollout is rolled back instead of waiting at "
        "its step, a count; 0 = keep accumulating and wait for traffic forever.",
    )


class Direct(Spec):
    """Replace the stable version at once."""

    strategy: Literal["direct"] = Field(description="Rollout strategy.")


class BlueGreen(Spec):
    """Load green beside blue, shadow-validate it, switch all traffic, keep blue for a bake time."""

    strategy: Literal["blue_green"] = Field(description="Rollout strategy.")
    shadow_percent: float = Field(
        default=100.0, ge=0, le=100, description="Share of live traffic mirrored to green, in percent."
    )
    interval_s: float = Field(default=30.0, gt=0, description="Seconds per analysis interval.")
    analysis: Analysis = Field(default_factory=Analysis, description="Analysis thresholds.")
    failure_limit: int = Field(default=1, ge=1, description="Failed analyses before rollback.")
    bake_time_s: float = Field(
        default=300.0, ge=0, description="Seconds blue stays loaded after the switch for instant rollback."
    )


class Canary(Spec):
    """Move traffic to the candidate in weighted steps, analysing each interval."""

    strategy: Literal["canary"] = Field(description="Rollout strategy.")
    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        min_length=1,
        description="Candidate traffic percent per step; must rise and end at 100.",
    )
    interval_s: float = Field(default=60.0, gt=0, description="Seconds each step holds.")
    analysis: Analysis = Field(default_factory=Analysis, description="Analysis thresholds.")
    failure_limit: int = Field(default=2, ge=1, description="Failed analyses before rollback.")
    shadow_percent: float = Field(
        default=0.0, ge=0, le=100, description="Extra share of stable traffic mirrored to the candidate."
    )


Rollout = Annotated[Union[Direct, BlueGreen, Canary], Field(discriminator="strategy")]
