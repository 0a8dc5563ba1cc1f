"""Building blocks of the recipe language: the strict base model, names, secrets, workspace paths."""

import re
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENV_VAR_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")

#: Marks a field whose value may come from ``${oc.env:VAR}`` (see ``loading/hostile.py``).
ENV_DRIVEN = {"loom_env": True}


class Spec(BaseModel):
    """Base of every recipe model: frozen, strict about unknown keys, described for editors."""

    # defer_build: validators are built on first use, so `loom validate` builds only what it needs.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, defer_build=True)


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            "Names must start with a lowercase letter and use only a-z, 0-9 and '_' (at most 63)"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""An identifier used for sources, entities, views, models: ``customer_profile``."""


def _check_workspace_path(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or value.startswith("~"):
        raise ValueError(
            "This path must stay inside the workspace: use a relative path without '..' "
            "(it is resolved against env.workspace_dir)"
        )
    return value


WorkspacePath = Annotated[str, AfterValidator(_check_workspace_path)]
"""A path relative to the workspace directory that may not escape it."""

#: Ray's built-in resources, each with its own recipe key; a custom resource may not take their names.
BUILTIN_RESOURCES = {"cpu": "the CPU keys (cpus_per_worker, num_cpus_per_replica)",
                     "gpu": "training.scaling.use_gpu", "memory": "no key (Ray sizes it)",
                     "object_store_memory": "no key (Ray sizes it)"}
RESOURCE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")


def _check_custom_resources(value: dict[str, float]) -> dict[str, float]:
    for name, amount in value.items():
        builtin = BUILTIN_RESOURCES.get(name.lower())
        if builtin:
            raise ValueError(f"{name!r} is one of Ray's built-in resources: use {builtin} for it; "
                             "this map is for custom resources given to `ray start --resources`")
        if not RESOURCE_RE.match(name):
            raise ValueError(f"{name!r} is not a Ray resource name: letters, digits, '_', '.', ':' "
                             "and '-', starting with a letter or '_'")
        if not amount > 0:
            raise ValueError(f"{name}: {amount!r} must be above 0 (leave the resource out instead)")
    return value


CustomResources = Annotated[dict[str, float], AfterValidator(_check_custom_resources)]
"""Custom Ray resources (``{serve_node: 1}``) a task reserves: they pin it to the nodes started
with ``ray start --resources='{"serve_node": N}'``."""


class SecretRef(Spec):
    """Where a secret comes from. Secrets never sit in YAML: write ``${oc.env:VAR}`` or ``{env: VAR}``."""

    env: str | None = Field(default=None, description="Environment variable holding the secret.")
    file: str | None = Field(
        default=None, description="File holding the secret (read at use time, never logged)."
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_plain(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                "A secret may not be written as a plain value: secrets never sit in YAML. "
                "Use ${oc.env:VAR_NAME} or {env: VAR_NAME}"
            )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "SecretRef":
        if (self.env is None) == (self.file is None):
            raise ValueError("Give exactly one of 'env' or 'file' for a secret")
        if self.env is not None and not ENV_VAR_RE.match(self.env):
            raise ValueError(f"'{self.env}' is not an environment variable name (A-Z, 0-9, _)")
        return self

    def __repr__(self) -> str:
        return f"SecretRef({'env=' + self.env if self.env else 'file=' + str(self.file)})"

    def where(self) -> str:
        """Where the secret comes from, for people: ``environment variable X`` or ``file P``."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def reveal(self) -> str:
        """Read the secret's value; raises KeyError/OSError when it is not available."""
        import os

        if self.env is not None:
            return os.environ[self.env]
        with open(self.file, encoding="utf-8") as fh:  # type: ignore[arg-type]
            return fh.read().strip()

