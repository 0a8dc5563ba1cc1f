"""The ``monitoring`` section: the replicas' metrics and the alert rules rendered for Prometheus."""

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from framework.spec.base import Name, SecretRef, Spec

#: Alerts Loom renders from thresholds (``slo``, ``drift``); a user alert may not take their names.
GENERATED_ALERTS = ("high_error_rate", "slow_predictions", "feature_drift", "score_drift",
                    "missing_features", "out_of_range_features", "stale_features")


class AlertRule(Spec):
    """A Prometheus alerting rule."""

    name: Name = Field(description="Alert name.")
    expr: str = Field(description="PromQL expression that fires the alert.")
    for_s: float = Field(default=60.0, ge=0, description="Seconds the condition holds before firing.")
    severity: Literal["info", "warning", "critical"] = Field(
        default="warning", description="Alert severity."
    )
    summary: str = Field(default="", description="One line for the person paged.")


class Slo(Spec):
    """Service-level alerts, rendered per model and version from thresholds."""

    max_error_rate: float | None = Field(
        default=0.02, gt=0, le=1, description="Fraction of a version's requests that fail "
        "(outcome error, not client errors) above which `high_error_rate` fires; null: no alert.")
    max_p99_latency_ms: float | None = Field(
        default=250.0, gt=0, description="p99 request latency of a version, in ms, above which "
        "`slow_predictions` fires; null: no alert.")
    window_s: float = Field(
        default=300.0, gt=0, description="Seconds of traffic the error rate and p99 are computed "
        "over (the PromQL rate window).")
    for_s: float = Field(
        default=300.0, ge=0, description="Seconds a breach holds before its alert fires.")


class Drift(Spec):
    """Model and data monitoring in the replicas: each feature and the score binned in the bins of
    the answering version's training reference profile, against which PSI is computed per window."""

    enabled: bool = Field(
        default=True, description="Bin features and scores in the replicas (ray_loom_feature_* and "
        "ray_loom_score_* series, PSI gauges) and render the drift alerts.")
    sample_rate: float = Field(
        default=1.0, gt=0, le=1, description="Fraction of model calls whose rows are binned (1: "
        "every row a model version answers; a request's rows are drawn together; cached and "
        "fallback answers are not binned).")
    window_s: float = Field(
        default=600.0, ge=5, le=86_400, description="Seconds of traffic each replica's PSI gauges "
        "cover (ray_loom_feature_psi, ray_loom_score_psi); also the rate window of the "
        "missing and out-of-range alerts.")
    min_rows: int = Field(
        default=100, ge=1, description="Rows a window needs before its PSI is exported; fewer say "
        "nothing rather than something noisy.")
    psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a feature or the score has drifted (0.1: "
        "some change, 0.2: significant): flagged by `loom monitor recipe=NAME`, alerted on, and "
        "gating rollouts with monitoring.on_drift.")
    missing_threshold: float = Field(
        default=0.05, ge=0, le=1, description="Fraction of rows missing a feature above which it "
        "is flagged and alerted on. Rows reach a model with missing features only with "
        "serving.missing_features: model (reject answers 422 first) or as unseen categories.")
    out_of_range_threshold: float = Field(
        default=0.05, ge=0, le=1, description="Fraction of a feature's values outside the range seen "
        "in training above which it is flagged and alerted on.")
    for_s: float = Field(
        default=300.0, ge=0, description="Seconds a drift condition holds before its alert fires.")
    max_feature_age_s: float | None = Field(
        default=None, gt=0, description="Freshness: mean age of the online feature values served "
        "(now minus each value's event time, per feature view, ray_loom_feature_age_seconds) above "
        "which the stale_features alert fires; none (the default): no freshness alert.")

    def replica_settings(self) -> dict[str, float]:
        """The keys the replicas read (the rest are the alerts', `loom monitor`'s, the rollout's)."""
        return {"sample_rate": self.sample_rate, "window_s": self.window_s, "min_rows": self.min_rows}


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
        "and accuracy; above it `loom monitor evaluate recipe=NAME` flags the gap.")


class Webhook(Spec):
    """Where Alertmanager posts the model's alerts (its ``webhook_config``)."""

    url: str | None = Field(
        default=None, description="The webhook's http(s) URL, written into alertmanager.yml; it "
        "may not carry credentials (put a token in bearer_token, or use url_secret).")
    url_secret: SecretRef | None = Field(
        default=None, description="The URL as a secret, for URLs that are themselves the "
        "credential (e.g. Slack's): rendered as url_file, which Alertmanager reads (releases after 0.25).")
    bearer_token: SecretRef | None = Field(
        default=None, description="Token sent as 'Authorization: Bearer', rendered as "
        "credentials_file, which Alertmanager reads.")
    send_resolved: bool = Field(default=True, description="Also post when an alert resolves.")

    @field_validator("url")
    @classmethod
    def _plain_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("A webhook URL starts with http:// or https:// and names a host")
        if parts.username or parts.password:
            raise ValueError("A webhook URL may not carry credentials (user:password@): they would "
                             "sit in clear in alertmanager.yml. Use bearer_token or url_secret")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> "Webhook":
        if (self.url is None) == (self.url_secret is None):
            raise ValueError("Give exactly one of 'url' or 'url_secret' for the webhook")
        return self


class Alertmanager(Spec):
    """An Alertmanager receiver for the model's alerts, rendered as alertmanager.yml."""

    address: str = Field(
        default="127.0.0.1:9093", pattern=r"^[A-Za-z0-9.\-\[\]:]+:\d+$",
        description="host:port of the Alertmanager that Prometheus sends alerts to (the "
        "alerting section of the rendered prometheus.yml).")
    webhook: Webhook = Field(description="The receiver's webhook.")
    group_wait_s: float = Field(
        default=30.0, ge=0, description="Seconds Alertmanager waits to group a new alert with "
        "others before the first post.")
    group_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between posts about new alerts of a group.")
    repeat_interval_s: float = Field(
        default=14_400.0, gt=0, description="Seconds before a still-firing alert is posted again.")


class Monitoring(Spec):
    """How the running system is watched."""

    enabled: bool = Field(
        default=True, description="Export the replicas' Prometheus metrics (ray_loom_*) and render "
        "the alert rules; false turns both off.")
    scrape_interval_s: float = Field(default=15.0, gt=0, description="Scrape interval, seconds.")
    prometheus_url: str | None = Field(
        default=None, description="The http(s) URL of a Prometheus that scrapes this model's "
        "replicas (Ray's metrics endpoint, as the rendered prometheus.yml does). When set, each "
        "rollout analysis window is read from it (PromQL over the ray_loom_slot_* series, "
        "Flagger-style) instead of from the replicas' own samples, and judged the same way, "
        "except shadow agreement, which counters do not keep. A request reaches Prometheus up to "
        "Ray's metrics report interval (10 s) plus scrape_interval_s late, so each window is read "
        "that much later; keep rollout.interval_s well above both. none (the default): the "
        "replicas' samples.")
    alerts: list[AlertRule] = Field(
        default_factory=list, description="Your own alert rules (PromQL), rendered beside the "
        "generated ones; every ray_loom_* selector is scoped to the model.")
    slo: Slo = Field(default_factory=Slo, description="Error-rate and p99-latency alerts.")
    drift: Drift = Field(default_factory=Drift, description="Feature and score drift, missing and "
                         "out-of-range values, in the replicas.")
    log: PredictionLog = Field(default_factory=PredictionLog, description="The prediction log.")
    fairness: Fairness | None = Field(
        default=None, description="Per-group metrics in `loom monitor evaluate recipe=NAME`; none by "
        "default.")
    alertmanager: Alertmanager | None = Field(
        default=None, description="An Alertmanager webhook receiver for the alerts; none by default.")
    on_drift: Literal["alert", "pause_rollout", "rollback"] = Field(
        default="alert", description="What a drifted candidate does to its rollout: alert (only "
        "the drift alerts fire), pause_rollout (the rollout holds its step while the candidate's "
        "score PSI against its training profile is above drift.psi_threshold; promote, abort or "
        "roll back by hand) or rollback (that analysis fails). Judged on each analysis window of a "
        "canary or blue_green rollout, on the rollout's own samples (so also with drift.enabled "
        "false).")

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Got {value!r}. A Prometheus URL starts with http:// or https:// and "
                             "names a host, e.g. http://127.0.0.1:9090")
        if parts.username or parts.password:
            raise ValueError("A Prometheus URL may not carry credentials (user:password@): they "
                             "would reach plans, logs and the rollout state")
        return value

    def alert_names(self) -> list[str]:
        """Every alert ``monitoring.rules`` renders, in order: the generated ones these settings
        keep (``backends.alert_rules``), then the recipe's own."""
        names = (["high_error_rate"] if self.slo.max_error_rate is not None else []) + (
            ["slow_predictions"] if self.slo.max_p99_latency_ms is not None else [])
        if self.drift.enabled:
            names += ["feature_drift", "score_drift", "missing_features", "out_of_range_features"]
            names += ["stale_features"] if self.drift.max_feature_age_s is not None else []
        return names + [a.name for a in self.alerts]

    @model_validator(mode="after")
    def _rules_render(self) -> "Monitoring":
        taken = sorted({a.name for a in self.alerts} & set(GENERATED_ALERTS))
        if taken:
            raise ValueError(f"Alert name(s) {', '.join(taken)} are Loom's generated alerts (set "
                             "their thresholds under monitoring.slo / monitoring.drift); rename yours")
        # rate() needs two samples in its window: a window shorter than two scrapes is always empty.
        windows = [("slo.window_s", self.slo.window_s)]
        windows += [("drift.window_s", self.drift.window_s)] if self.drift.enabled else []
        for key, window in windows:
            if window < 2 * self.scrape_interval_s:
                raise ValueError(f"{key} ({window:g} s) must be at least twice scrape_interval_s "
                                 f"({self.scrape_interval_s:g} s): a shorter window holds fewer "
                                 "than two samples, and its alert could never fire")
        return self
