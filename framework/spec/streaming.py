"""The ``streaming`` section: events scored by ``loom stream`` consumers on an event bus."""

from typing import Literal

from pydantic import Field, model_validator

from framework.spec.base import ENV_DRIVEN, SecretRef, Spec


class RedisBus(Spec):
    """Redis Streams as the event bus (the embedded default: a Redis on this machine)."""

    type: Literal["redis"] = Field(description="Event bus type.")
    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis://host:port/db of the Redis that holds the streams; may come from "
        "${oc.env:VAR}.",
        json_schema_extra=ENV_DRIVEN,
    )
    password: SecretRef | None = Field(
        default=None, description="Redis password, from ${oc.env:VAR} or {env: VAR}."
    )


class EventSchema(Spec):
    """What an event carries: the model's join keys and, optionally, feature values that override
    the stored ones (as ``features`` in an API request), plus its id and time."""

    id_field: str = Field(
        default="event_id", min_length=1, max_length=64,
        description="Field with the event's id: one result per id reaches the sink.",
    )
    time_field: str = Field(
        default="event_time", min_length=1, max_length=64,
        description="Optional field with the event's time (ISO 8601 or epoch ms); the end-to-end "
        "latency counts from it (else from the moment the bus took the event).",
    )
    max_id_chars: int = Field(default=200, ge=1, le=10_000, description="Longest event id accepted.")


class Streaming(Spec):
    """Streaming inference: ``loom stream up`` starts consumers that score every event of a
    source stream with the served model (its version slots and traffic split) into a sink stream.

    Streams are named after the model unless given: ``loom:<model>:events`` (source),
    ``loom:<model>:predictions`` (sink), ``loom:<model>:dead`` (dead letters).
    """

    bus: RedisBus = Field(default_factory=lambda: RedisBus(type="redis"), description="The event bus.")
    source: str | None = Field(default=None, max_length=200, description="Stream events are read from.")
    group: str | None = Field(
        default=None, max_length=200,
        description="Consumer group on the source (default loom-<model>); consumers share it.",
    )
    sink: str | None = Field(default=None, max_length=200, description="Stream results go to.")
    dead_letter: str | None = Field(
        default=None, max_length=200,
        description="Stream of events that cannot be scored, each with the reason.",
    )
    start: Literal["new", "all"] = Field(
        default="new", description="Where a new consumer group starts: events added from now on "
        "(new) or every event the source holds (all).",
    )
    event: EventSchema = Field(default_factory=EventSchema, description="The events' fields.")
    consumers: int = Field(default=2, ge=1, le=64, description="Consumer actors on the Ray cluster.")
    cpus_per_consumer: float = Field(default=0.1, gt=0, le=64, description="CPUs each consumer reserves.")
    read_count: int = Field(
        default=100, ge=1, le=10_000, description="Events a consumer reads and scores at once.",
    )
    block_ms: int = Field(
        default=200, ge=1, le=60_000, description="How long a read waits for new events.",
    )
    claim_idle_ms: int = Field(
        default=10_000, ge=100, le=86_400_000,
        description="An event read but not answered this long (its consumer died) is claimed "
        "by another consumer (XAUTOCLAIM).",
    )
    sink_max_len: int = Field(
        default=1_000_000, ge=1_000,
        description="The sink and dead-letter streams are trimmed to about this many entries.",
    )
    dedupe_ttl_s: int = Field(
        default=86_400, ge=60,
        description="How long an event id is remembered, so a redelivered event writes no "
        "second result.",
    )
    sync_s: float = Field(
        default=1.0, gt=0, le=60,
        description="How often consumers re-read the online app's version slots and traffic split.",
    )

    @model_validator(mode="after")
    def _distinct_streams(self) -> "Streaming":
        named = [s for s in (self.source, self.sink, self.dead_letter) if s]
        if len(named) != len(set(named)):
            raise ValueError("streaming.source, streaming.sink and streaming.dead_letter must be "
                             "different streams (a result written to the source would be read "
                             "as an event).")
        return self

    def names(self, model: str) -> dict[str, str]:
        """Source, group, sink and dead-letter stream names for ``model``, and the prefix of the
        keys that remember answered event ids."""
        tag = f"loom:{model}"
        return {"source": self.source or f"{tag}:events", "group": self.group or f"loom-{model}",
                "sink": self.sink or f"{tag}:predictions",
                "dead_letter": self.dead_letter or f"{tag}:dead", "seen": f"{tag}:seen:"}
