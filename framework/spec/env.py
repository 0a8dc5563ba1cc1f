"""The ``env`` section: where Loom keeps its state and which Ray it talks to."""

from pydantic import Field

from framework.spec.base import ENV_DRIVEN, Spec


class Env(Spec):
    """Runtime environment: workspace directory and Ray connection."""

    workspace_dir: str = Field(
        default=".loom",
        description="Directory for all Loom state (Feast repo, MLflow store, plans, rollout log).",
        json_schema_extra=ENV_DRIVEN,
    )
    ray_address: str = Field(
        default="",
        description="Ray cluster address (ray://host:10001 or host:6379); empty uses the "
        "workspace's own head (127.0.0.1, token auth), started when a command needs it.",
        json_schema_extra=ENV_DRIVEN,
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs for an embedded local Ray; null uses every core."
    )
    project: str = Field(
        default="",
        pattern=r"^([a-z][a-z0-9_]{0,30})?$",
        description="Name of this project on shared engines: Serve applications, detached actors, "
        "Feast projects and MLflow experiments carry it ('teama-churn'), so projects can share one "
        "Ray cluster. Empty: the names are the model's own (one project per cluster). Give each "
        "project sharing a cluster its own serving.route_prefix too.",
    )
    metrics_export_port: int = Field(
        default=8090, ge=1024, le=65535, description="Ray metrics port (kept outside 10002-19999)."
    )
