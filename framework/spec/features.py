"""The ``features`` section: entities, feature views, the model's feature service and the stores."""

from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from framework.spec.base import ENV_DRIVEN, Name, SecretRef, Spec, WorkspacePath

ValueType = Literal["string", "int32", "int64", "float32", "float64", "bool"]
"""Feature and join-key value types; they map one-to-one onto Feast value types."""


class Entity(Spec):
    """A thing features describe, identified by its join keys (``customer_id``)."""

    join_keys: list[str] = Field(
        description="Columns that identify the entity in sources and requests.", min_length=1
    )
    value_type: ValueType = Field(default="string", description="Type of the join key values.")
    description: str = Field(default="", description="What the entity is, for people.")


class FeatureView(Spec):
    """A group of features read from one source for one or more entities."""

    entities: list[Name] = Field(description="Entity names (from features.entities).", min_length=1)
    source: Name = Field(description="Data source name (from data.sources).")
    ttl_s: int = Field(
        default=0,
        ge=0,
        description=(
            "How long a value stays valid after its event time, in seconds; 0 means forever. "
            "Older values read as missing in training rows and online lookups."
        ),
    )
    online: bool = Field(default=True, description="Materialize into the online store for serving.")
    push: bool = Field(
        default=False,
        description=(
            "Also fed by a Feast push source: streaming events that carry this view's fields write "
            "them to the online store (before their prediction) and to the offline store (appended "
            "to the source's parquet file, so later training sees them). Needs online: true and a "
            "parquet source of its own."
        ),
    )
    fields: dict[str, ValueType] = Field(
        description="Feature columns and their types.", min_length=1
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form tags for the registry.")


class FeatureService(Spec):
    """The features a model reads, as ``view:feature`` references, in model input order."""

    name: Name = Field(description="Feature service name in the Feast registry.")
    features: list[str] = Field(
        description="Features as 'view:feature' (or 'view:*' for every field of a view).",
        min_length=1,
    )


class SqliteOnlineStore(Spec):
    """Embedded online store: a SQLite file in the workspace."""

    type: Literal["sqlite"] = Field(description="Online store type.")
    path: WorkspacePath = Field(
        default="feast/online_store.db", description="SQLite file, relative to the workspace."
    )


class RedisOnlineStore(Spec):
    """Redis online store, for serving at scale."""

    type: Literal["redis"] = Field(description="Online store type.")
    connection_string: str = Field(
        default="127.0.0.1:6379",
        description="Redis 'host:port[,db=N]'; may come from ${oc.env:VAR}.",
        json_schema_extra=ENV_DRIVEN,
    )
    password: SecretRef | None = Field(
        default=None, description="Redis password, from ${oc.env:VAR} or {env: VAR}."
    )


OnlineStore = Annotated[
    Union[SqliteOnlineStore, RedisOnlineStore], Field(discriminator="type")
]


class DuckdbOfflineStore(Spec):
    """DuckDB offline store: exact point-in-time joins that keep every label row (the default)."""

    type: Literal["duckdb"] = Field(description="Offline store type.")


class FileOfflineStore(Spec):
    """Feast's dask file store. It drops rows without features in the TTL window; Loom checks row counts."""

    type: Literal["file"] = Field(description="Offline store type.")


OfflineStore = Annotated[
    Union[DuckdbOfflineStore, FileOfflineStore], Field(discriminator="type")
]


class Store(Spec):
    """Where features live: offline for training, online for serving."""

    online: OnlineStore = Field(
        default_factory=lambda: SqliteOnlineStore(type="sqlite"), description="Online store."
    )
    offline: OfflineStore = Field(
        default_factory=lambda: DuckdbOfflineStore(type="duckdb"), description="Offline store."
    )
    registry: str = Field(
        default="",
        pattern=r"^(|(postgresql|postgresql\+psycopg|mysql|mysql\+pymysql|sqlite)://.+)$",
        description="Where Feast keeps its registry (the definitions of entities, views and "
        "services). Empty: a file in the workspace, which only this machine reads. On a "
        "multi-node cluster every serving replica reads it, so give a SQL registry every node "
        "reaches: postgresql+psycopg://user@host:5432/db (the password from the nodes' PGPASSWORD "
        "or ~/.pgpass, never the recipe). One database may hold many projects.",
        json_schema_extra=ENV_DRIVEN,
    )

    @field_validator("registry")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if value and urlsplit(value).password:
            raise ValueError("A registry URL may not carry a password (user:password@): it would "
                             "reach plans, logs and Serve's config. Give it to the nodes as "
                             "PGPASSWORD (or ~/.pgpass) and keep only user@host in the URL")
        return value


class Features(Spec):
    """Entities, feature views, the model's feature service and the feature stores."""

    project: Name | None = Field(
        default=None, description="Feast project name; defaults to the recipe name."
    )
    entities: dict[Name, Entity] = Field(description="Entities by name.", min_length=1)
    views: dict[Name, FeatureView] = Field(description="Feature views by name.", min_length=1)
    service: FeatureService = Field(description="The features the model reads.")
    store: Store = Field(default_factory=Store, description="Online and offline stores.")
