"""Preflight: what an apply will need (data that matches the recipe, secrets that resolve), checked first.

It runs in ``loom plan`` (and so before ``loom launch`` does any work) and before a saved plan is
applied. It imports no engine: the data checks read Parquet/CSV schemas and the label column with
pyarrow; the secret checks read the environment and secret files; the resource checks add up the
CPUs each phase asks of the embedded Ray head (``resources.py``). It lives with the backends
because it knows what each step kind reads (``framework.compile`` may not import backends).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from framework.backends.shared_stores import KEYS as NODE_LOCAL_KEYS
from framework.errors import Problem, RecipeError

if TYPE_CHECKING:
    from framework.spec import Recipe
    from framework.spec.base import SecretRef

TITLE = "Preflight: data does not match the recipe"
SECRETS_TITLE = "Preflight: secrets the plan needs are not available"
RESOURCES_TITLE = "Preflight: the plan does not fit the Ray cluster"
NODE_LOCAL_TITLE = "Preflight: stores only this machine reaches, for a cluster of several"
CHECKS_TITLE = "Preflight: data checks failed; training is blocked until they pass"
#: Step kinds that read the recipe's data files (sources must match the recipe).
DATA_KINDS = frozenset({"feast.view", "feast.materialize", "training.dataset", "training.tune",
                        "training.train"})
#: Step kinds whose backends open the Feast store (a Redis online store needs its password).
STORE_KINDS = ("feast.entity", "feast.view", "feast.service", "feast.materialize",
               "training.dataset", "serving.deploy", "rollout.step")
#: Step kinds that start or reconfigure serving replicas (they hash the API keys).
SERVING_KINDS = ("serving.deploy", "rollout.step")


def preflight(recipe: "Recipe", project_dir: Path, kinds: Iterable[str],
              origin: Callable[[str], str | None] = lambda path: None) -> list[Problem]:
    """Every problem that would fail applying steps of ``kinds``, before any of them runs.

    Args:
        recipe: the validated recipe.
        project_dir: where relative source paths resolve.
        kinds: the kinds of the steps the plan changes.
        origin: the file that set a recipe key (``Problem.file``).

    Returns:
        One Problem per failure, each naming the file, the recipe key and the fix.
    """
    from framework.api import workspace_of
    from framework.backends.feast.sources import check_sources
    from framework.backends.resources import resource_problems

    kinds = set(kinds)
    problems = check_sources(recipe, project_dir) if kinds & DATA_KINDS else []
    if kinds & DATA_KINDS:
        problems += data_check_problems(recipe, project_dir)
    problems += secret_problems(recipe, kinds, project_dir)
    from framework.backends.shared_stores import node_local_problems

    problems += node_local_problems(recipe, kinds)
    problems += resource_problems(recipe, kinds, workspace_of(recipe, project_dir))
    return [Problem(path=p.path, message=p.message, file=p.file or origin(p.path), value=p.value,
                    has_value=p.has_value, hint=p.hint) for p in problems]


def raise_for(problems: list[Problem]) -> None:
    """Raise one RecipeError listing every preflight problem; do nothing when there are none."""
    if not problems:
        return
    if all(_is_data_check(p) for p in problems):
        raise RecipeError(problems, title=CHECKS_TITLE)
    if all(_is_resource(p) for p in problems):
        raise RecipeError(problems, title=RESOURCES_TITLE)
    if all(p.path in NODE_LOCAL_KEYS for p in problems):
        raise RecipeError(problems, title=NODE_LOCAL_TITLE)
    data = any(not _is_secret(p) and not _is_resource(p) and p.path not in NODE_LOCAL_KEYS
               for p in problems)
    raise RecipeError(problems, title=TITLE if data else SECRETS_TITLE)


def data_check_problems(recipe: "Recipe", project_dir: Path) -> list[Problem]:
    """The sources' ``checks`` that fail, answered from parquet statistics where they can be."""
    from framework.api import workspace_of
    from framework.backends import data_quality

    if all(src.checks.empty for src in recipe.data.sources.values()):
        return []
    report = data_quality.run_checks(recipe, project_dir, workspace_of(recipe, project_dir),
                                     use_statistics=True)
    return data_quality.problems(report)


def secret_problems(recipe: "Recipe", kinds: set[str], project_dir: Path) -> list[Problem]:
    """The secrets steps of ``kinds`` will read and that are not available now."""
    problems: list[Problem] = []
    serving = [k for k in SERVING_KINDS if k in kinds]
    auth = recipe.serving.auth
    if serving and auth.enabled:
        for i, entry in enumerate(auth.api_keys):
            problems += _unresolved(entry.key, f"serving.auth.api_keys[{i}].key",
                                    f"{serving[0]} needs it (API key '{entry.name}')",
                                    "a long random key clients will send, e.g. $(openssl rand -hex 16)")
        keys_file = auth.keys_file and Path(project_dir) / Path(auth.keys_file).expanduser()
        if keys_file and not _readable(str(keys_file)):
            problems.append(Problem(path="serving.auth.keys_file", value=auth.keys_file, has_value=True,
                                    message=f"Keys file not found or unreadable; {serving[0]} reads it.",
                                    hint="Create the JSON file of [{name, key, models}] or fix the path."))
    store = [k for k in STORE_KINDS if k in kinds]
    online = recipe.features.store.online
    password = getattr(online, "password", None)
    if store and password is not None:
        problems += _unresolved(password, "features.store.online.password",
                                f"{store[0]} needs it (the Redis password)", "the Redis password")
    train = [k for k in ("training.train", "training.tune") if k in kinds]
    s3 = recipe.env.storage_s3
    if train and s3 is not None and s3.access_key_id is not None:
        for key in ("access_key_id", "secret_access_key"):
            problems += _unresolved(getattr(s3, key), f"env.storage_s3.{key}",
                                    f"{train[0]} writes its checkpoints to env.storage_path with it",
                                    f"the object store's {key.replace('_', ' ')}")
    return problems


def _unresolved(ref: "SecretRef", key: str, why: str, what: str) -> list[Problem]:
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value:
            return []
        state = "is empty" if value == "" else "is not set"
        return [Problem(path=key, message=f"Environment variable {ref.env} {state}; {why}.",
                        hint=f"export {ref.env}=... ({what}), then run the command again.")]
    if _readable(str(ref.file)):
        return []
    return [Problem(path=key, message=f"Secret file {ref.file} is missing or unreadable; {why}.",
                    hint=f"Write {what} into {ref.file} (one line, readable by you only: chmod 600).")]


def _readable(path: str) -> bool:
    file = Path(path).expanduser()
    return file.is_file() and os.access(file, os.R_OK)


def _is_resource(p: Problem) -> bool:
    return p.path.startswith(("training.scaling", "serving.replicas", "serving.autoscaling",
                              "env.ray_address"))


def _is_data_check(p: Problem) -> bool:
    return p.path.startswith("data.sources.") and ".checks." in p.path


def _is_secret(p: Problem) -> bool:
    return p.path.startswith(("serving.auth", "features.store.online.password", "env.storage_s3"))
