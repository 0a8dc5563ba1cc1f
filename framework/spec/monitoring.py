"""The ``monitoring`` section: the replicas' metrics and the alert rules rendered for Prometheus."""

from typing import Literal

from pydantic import Field

from framework.spec.base import Name, Spec


class AlertRule(Spec):
    """A Prometheus alerting rule."""

    name: Name = Field(description="Alert name.")
    expr: str = Field(description="PromQL expression that fires the alert.")
    for_s: float = Field(default=60.0, ge=0, description="Seconds the condition holds before firing.")
    severity: Literal["info", "warning", "critical"] = Field(
        default="warning", description="Alert severity."
    )
    summary: str = Field(default="", description="One line for the person paged.")


class Drift(Spec):
    """Model and data monitoring in the replicas: each feature and the score binned in the bins of
    the answering version's training reference profile, against which PSI is computed per window."""

    enabled: bool = Field(
        default=True, description="Bin features and scores in the replicas (ray_loom_feature_* and "
        "ray_loom_score_* series, PSI gauges) and render the drift alerts.")
    sample_rate: float = Field(
        default=1.0, gt=0, le=1, description="Fraction of answered rows binned (1: every row).")
    window_s: float = Field(
        default=600.0, ge=5, le=86_400, description="Seconds of traffic each replica's PSI gauges "
        "cover (ray_loom_feature_psi, ray_loom_score_psi).")
    min_rows: int = Field(
        default=100, ge=1, description="Rows a window needs before its PSI is exported; fewer say "
        "nothing rather than something noisy.")
    psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a feature or the score has drifted (0.1: "
        "some change, 0.2: significant): flagged by `loom monitor`, alerted on.")
    missing_threshold: float = Field(
        default=0.05, ge=0, le=1, description="Fraction of rows missing a feature above which it "
        "is flagged and alerted on.")
    out_of_range_threshold: float = Field(
        default=0.05, ge=0, le=1, description="Fraction of a feature's values outside the range seen "
        "in training above which it is flagged and alerted on.")
    for_s: float = Field(
        default=300.0, ge=0, description="Seconds a drift condition holds before its alert fires.")


class PredictionLog(Spec):
    """Sampled request and response records, for `loom monitor` and delayed-label evaluation."""

    enabled: bool = Field(default=True, description="Write the prediction log.")
    sample_rate: float = Field(
        default=0.1, ge=0, le=1, description="Fraction of answered rows logged.")
    max_mb: float = Field(
        default=256.0, gt=0, description="Size the log may reach on disk, in MB; the oldest files "
        "go first.")
    flush_s: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds a replica buffers records before it writes "
        "a parquet file.")


class Fairness(Spec):
    """The same accuracy metrics and positive rate per group, the largest gap flagged."""

    group_by: list[Name] = Field(
        min_length=1, description="Columns that define the groups: entity keys, features, or "
        "columns of the labels file.")
    max_gap: float = Field(
        default=0.1, gt=0, le=1, description="Largest allowed gap between groups in positive rate "
        "and accuracy; above it `loom monitor evaluate` flags the gap.")


class Monitoring(Spec):
    """How the running system is watched."""

    enabled: bool = Field(
        default=True, description="Export the replicas' Prometheus metrics (ray_loom_*) and render "
        "the alert rules; false turns both off.")
    scrape_interval_s: float = Field(default=15.0, gt=0, description="Scrape interval, seconds.")
    alerts: list[AlertRule] = Field(default_factory=list, description="Alert rules.")
    drift: Drift = Field(default_factory=Drift, description="Feature and score drift, missing and "
                         "out-of-range values, in the replicas.")
    log: PredictionLog = Field(default_factory=PredictionLog, description="The prediction log.")
    fairness: Fairness | None = Field(
        default=None, description="Per-group metrics in `loom monitor evaluate`; none by default.")
