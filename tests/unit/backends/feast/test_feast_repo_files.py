"""The generated repo files: feature_store.yaml content (no secrets) and the definitions source."""

from __future__ import annotations

from pathlib import Path

from framework.backends.feast.online import _repo_config
from framework.backends.feast.repo import config_dict, definitions_source, inline_config
from framework.spec import Recipe


def recipe(online: dict, registry: str = "") -> Recipe:
    return Recipe.model_validate({
        "schema_version": 1, "name": "shop",
        "data": {"sources": {"s": {"type": "parquet", "path": "f.parquet", "timestamp_field": "ts"}}},
        "features": {
            "entities": {"customer": {"join_keys": ["customer_id"]}},
            "views": {"v": {"entities": ["customer"], "source": "s", "fields": {"x": "float64"}}},
            "service": {"name": "svc", "features": ["v:x"]},
            "store": {"online": online, "registry": registry},
        },
        "training": {"label": {"source": "s", "column": "y"},
                     "model": {"type": "xgboost", "objective": "binary:logistic"}},
        "serving": {"auth": {"enabled": False}},
    })


def test_sqlite_config_uses_paths_relative_to_the_repo_in_the_file(tmp_path: Path):
    r = recipe({"type": "sqlite", "path": "stores/online.db"})
    cfg = config_dict(r, tmp_path / "ws", for_file=True)
    assert cfg["project"] == "shop" and cfg["offline_store"] == {"type": "duckdb"}
    assert cfg["online_store"] == {"type": "sqlite", "path": "../../stores/online.db"}
    assert cfg["registry"]["path"] == "registry.db"
    in_code = config_dict(r, tmp_path / "ws")
    assert in_code["registry"]["path"] == str((tmp_path / "ws/feast/shop/registry.db").resolve())


def test_redis_password_never_reaches_the_file(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SHOP_REDIS_PW", "s3cret-value")
    r = recipe({"type": "redis", "connection_string": "10.0.0.5:6379", "password": {"env": "SHOP_REDIS_PW"}})
    in_file = config_dict(r, tmp_path, for_file=True)["online_store"]["connection_string"]
    assert in_file == "10.0.0.5:6379,password=${SHOP_REDIS_PW}"
    assert config_dict(r, tmp_path)["online_store"]["connection_string"].endswith("password=s3cret-value")


def test_a_sql_registry_goes_inline_to_replicas_with_no_path_of_this_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOP_REDIS_PW", "s3cret-value")
    r = recipe({"type": "redis", "connection_string": "10.0.0.5:6379", "password": {"env": "SHOP_REDIS_PW"}},
               registry="postgresql+psycopg://loom@db:5432/feast")
    inline = inline_config(r, tmp_path / "ws")
    assert inline["registry"]["registry_type"] == "sql"
    assert inline["registry"]["path"] == "postgresql+psycopg://loom@db:5432/feast"
    assert str(tmp_path) not in str(inline) and "s3cret" not in str(inline)
    # The replica expands the password from its own environment, as Feast does for the file.
    config = _repo_config(inline)
    assert config.online_store.connection_string.endswith("password=s3cret-value")
    assert config.registry.registry_type == "sql"


def test_definitions_source_is_python_that_holds_the_spec():
    state = {"entities": {"customer": {"name": "customer", "join_key": "customer_id",
                                       "value_type": "int64", "tags": {"loom.fingerprint": "sha256:ab"}}},
             "sources": {}, "views": {}, "services": {}}
    source = definitions_source(state)
    compile(source, "loom_definitions.py", "exec")
    assert "sha256:ab" in source and "def build(" in source
    assert "import framework" not in source and "from framework" not in source  # the repo stands alone
