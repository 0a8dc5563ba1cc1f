"""The ``serving`` section: the Ray Serve application that answers prediction requests."""

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_serializer, model_validator

from framework.spec.base import CustomResources, Name, SecretRef, Spec

Scalar = Union[bool, int, float, str]


class Autoscaling(Spec):
    """Ray Serve autoscaling of the replicas (replaces a fixed replica count)."""

    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas.")
    max_replicas: int = Field(default=2, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(
        default=8, gt=0, description="Requests in flight per replica that autoscaling aims for."
    )


class Batching(Spec):
    """Server-side batching of concurrent requests into one model call."""

    enabled: bool = Field(default=True, description="Batch concurrent requests.")
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="Largest batch.")
    batch_wait_timeout_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Longest wait for a batch to fill, in milliseconds."
    )
    adaptive: bool = Field(
        default=True, description="Wait for a batch to fill only while other requests are on "
        "their way to the model (in the replica, not yet queued); a request alone never waits. "
        "false: every batch waits up to batch_wait_timeout_ms.",
    )


class Cache(Spec):
    """Exact-match LRU cache of answers, keyed by model version and features."""

    enabled: bool = Field(default=True, description="Cache answers.")
    max_entries: int = Field(default=10_000, ge=1, description="Entries kept per replica.")
    ttl_s: float = Field(default=60.0, gt=0, description="Seconds an answer stays valid.")
    max_bytes: int = Field(
        default=33_554_432, ge=1024,
        description="Bytes of answers and their keys kept per replica (32 MiB by default); the "
        "least recently used go first when either this or max_entries is reached.")


class PreviousVersionFallback(Spec):
    """Answer with the previous registered version of the same model."""

    type: Literal["previous_version"] = Field(description="Fallback level type.")


class ModelFallback(Spec):
    """Answer with another registered model (same features)."""

    type: Literal["model"] = Field(description="Fallback level type.")
    model_name: Name = Field(description="Registered model name.")
    alias: Name = Field(default="champion", description="Alias of the version to load.")


class Rule(Spec):
    """One rule: if every condition holds, answer with this prediction."""

    when: dict[str, str] = Field(
        description="Feature conditions such as {tenure_months: '< 3', contract: '== month_to_month'}."
    )
    prediction: Scalar = Field(description="Prediction to return.")
    probability: float | None = Field(default=None, ge=0, le=1, description="Probability to return.")


class RulesFallback(Spec):
    """Answer from hand-written rules, first match wins."""

    type: Literal["rules"] = Field(description="Fallback level type.")
    rules: list[Rule] = Field(description="Rules in order.", min_length=1)


class DefaultFallback(Spec):
    """Answer with a fixed response (the last resort)."""

    type: Literal["default"] = Field(description="Fallback level type.")
    prediction: Scalar = Field(description="Prediction to return.")
    probability: float | None = Field(default=None, ge=0, le=1, description="Probability to return.")


FallbackLevel = Annotated[
    Union[PreviousVersionFallback, ModelFallback, RulesFallback, DefaultFallback],
    Field(discriminator="type"),
]


class Timeouts(Spec):
    """Deadlines on the request path: every dependency call, the body read and the whole request."""

    feature_lookup_ms: float = Field(
        default=250.0, gt=0, le=60_000,
        description="Longest wait for the online feature store per request, in milliseconds; "
        "past it the fallback chain answers (degraded: true) and the store's breaker counts a failure.")
    model_ms: float = Field(
        default=1000.0, gt=0, le=60_000,
        description="Longest wait for one model call (batch queue included), in milliseconds; past "
        "it the fallback chain answers (degraded: true) and the version's breaker counts a failure.")
    body_read_s: float = Field(
        default=5.0, gt=0, le=600,
        description="Longest a client may take to send its request body, in seconds (408 after).")
    request_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="Longest a request may take end to end, in seconds: the replica answers 503 "
        "past it, and Serve's proxy (request_timeout_s) cuts any request 1 s later.")

    @model_validator(mode="after")
    def _request_is_longest(self) -> "Timeouts":
        floor = self.body_read_s + (self.feature_lookup_ms + self.model_ms) / 1000
        if self.request_s <= floor:
            raise ValueError(
                f"Got request_s {self.request_s:g}. The request timeout must exceed body_read_s + "
                f"(feature_lookup_ms + model_ms) / 1000 = {floor:g} s, or no request could finish")
        return self


class CircuitBreaker(Spec):
    """Per-dependency circuit breaker (feature store, model)."""

    failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open the circuit."
    )
    reset_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds open before one half-open probe is let through."
    )


class ApiKey(Spec):
    """An API key and the models it may call."""

    name: Name = Field(description="Who holds the key (shown in logs, never the key).")
    key: SecretRef = Field(description="The key, from ${oc.env:VAR} or {env: VAR} or {file: path}.")
    models: list[str] = Field(
        default_factory=lambda: ["*"], description="Model ids this key may call; '*' means all."
    )


class Auth(Spec):
    """API-key authentication; every route but /healthz needs a key when enabled."""

    enabled: bool = Field(default=True, description="Require an API key.")
    api_keys: list[ApiKey] = Field(default_factory=list, description="Keys and their scopes.")
    keys_file: str | None = Field(
        default=None,
        description="JSON file of [{name, key, models}] read at start (keys stored hashed in memory).",
    )


class LabelMapping(Spec):
    """Map a binary classifier's probability to named labels."""

    threshold: float = Field(default=0.5, ge=0, le=1, description="Probability at or above: positive.")
    positive: str = Field(default="1", description="Label for probabilities at or above threshold.")
    negative: str = Field(default="0", description="Label for probabilities below threshold.")


class Http(Spec):
    """Where the Serve HTTP proxy listens."""

    host: str = Field(default="127.0.0.1", description="Bind address; 0.0.0.0 exposes it to the network.")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port.")
    allow_unauthenticated: bool = Field(
        default=False,
        description="Accept serving.auth.enabled: false on a host other than loopback, i.e. let anyone "
        "who can reach host:port call the models without a key. Off: that combination is refused.",
    )


class Serving(Spec):
    """The prediction service: capacity, batching, cache, fallbacks, circuit breaker, auth, HTTP."""

    replicas: int = Field(default=1, ge=1, le=1000, description="Fixed replica count.")
    autoscaling: Autoscaling | None = Field(
        default=None, description="Autoscale replicas instead of a fixed count."
    )
    surge_replicas: int = Field(
        default=1, ge=0, le=100,
        description="Extra replicas while a candidate version is loaded (a rollout): Serve "
        "reconfigures replicas one at a time and routes none to a replica mid-reconfigure, so "
        "with a surge one replica always answers while another applies a weight change. 0 = none: a single "
        "replica then holds requests for ~0.1-0.2 s at every weight change.",
    )
    num_cpus_per_replica: float = Field(
        default=0.5, gt=0, description="CPUs reserved per replica (fractional is fine)."
    )
    resources: CustomResources = Field(
        default_factory=dict,
        description="Custom Ray resources each replica reserves besides its CPUs, e.g. "
        "{serve_node: 1}: replicas then run only on nodes started with `ray start "
        "--resources='{\"serve_node\": N}'` (N replicas each). A name no node of the cluster has "
        "fails the deploy at once.",
    )
    predictor: Literal["xgboost", "treelite", "auto"] = Field(
        default="xgboost",
        description="How replicas evaluate the trees. xgboost: the booster's inplace_predict. "
        "treelite: the registered model compiled to native code at deploy (Treelite + TL2cgen, "
        "gcc on the deploying machine, ~5 s per version), logged beside the UBJ in MLflow and used "
        "only after its predictions equal XGBoost's (1e-5) on the version's training profile's "
        "ranges and split edges, else the deploy is refused. auto: compile, measure both at one "
        "row (what a replica mostly scores) and keep the faster; the deploy records the timings. "
        "`loom optimize recipe=NAME` prints the whole table.",
    )
    max_ongoing_requests: int = Field(
        default=64, ge=1, description="Requests a replica accepts at once before 503."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body (413).")
    max_instances: int = Field(default=1000, ge=1, description="Largest batch request (instances).")
    max_entity_key_chars: int = Field(
        default=256, ge=1, le=65_536,
        description="Longest string entity key a request may send, in characters (422 beyond).")
    timeouts: Timeouts = Field(
        default_factory=Timeouts, description="Deadlines on the request path (dependency calls, "
        "body read, whole request).")
    missing_features: Literal["reject", "model"] = Field(
        default="reject",
        description="A request whose features are still missing after the online lookup (an "
        "unknown entity, a feature not sent): 'reject' answers 422 naming them; 'model' passes them "
        "to the model as missing values (XGBoost follows each tree's learned default branch) and "
        "lists them in the answer's 'missing_features'.",
    )
    batching: Batching = Field(default_factory=Batching, description="Server-side batching.")
    cache: Cache = Field(default_factory=Cache, description="Answer cache.")
    fallback: list[FallbackLevel] = Field(
        default_factory=list, description="Fallback chain, tried in order when the primary fails."
    )
    circuit_breaker: CircuitBreaker = Field(
        default_factory=CircuitBreaker, description="Circuit breaker per dependency."
    )
    auth: Auth = Field(default_factory=Auth, description="API-key authentication.")
    labels: LabelMapping | None = Field(
        default=None, description="Label mapping for binary classifiers."
    )
    http: Http = Field(default_factory=Http, description="HTTP listener.")
    route_prefix: str = Field(
        default="/", description="Prefix of every route: the model answers at "
        "<prefix>/v1/models/<model_id>/predictions, the gateway at <prefix>/v1/predictions. Give "
        "each project sharing a cluster its own prefix.")

    @model_serializer(mode="wrap")
    def _without_empty_resources(self, handler: Any) -> dict[str, Any]:
        # Recipes without custom resources dump (and so fingerprint) as they did before the key
        # existed, so adding it redeploys nothing.
        data = handler(self)
        if not data.get("resources"):
            data.pop("resources", None)
        return data
