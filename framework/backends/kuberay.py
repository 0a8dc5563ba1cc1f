"""KubeRay manifests of a recipe: a ``RayJob`` that trains it, a ``RayService`` that serves it.

``loom export kuberay`` writes them. Pod sizes come from ``training.scaling`` and ``serving``;
image, namespace and pod settings from ``env.kubernetes``; the RayService's ``serveConfigV2`` is
the file ``loom export serve-config`` writes, byte for byte. Secrets (the Ray auth token, API keys,
the Redis password) reach the pods through ``valueFrom.secretKeyRef`` of one Secret whose values
Loom never writes. Pure Python: no engine is imported here (the Serve config's builder validates
its output with Ray's own schema, as ``export serve-config`` does).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from framework.backends.ray_ingress import pod_env
from framework.errors import BackendError

#: The key KubeRay reads the Ray auth token from (``utils.RAY_AUTH_TOKEN_SECRET_KEY``).
TOKEN_KEY = "auth_token"
#: Where the composed recipe (the ConfigMap) is mounted in the head pods.
RECIPE_DIR = "/loom/recipe"
SECRET_VOLUME = "loom-secrets"
RECIPE_VOLUME = "loom-recipe"
#: Set by KubeRay in every Ray container (and by Ray Jobs for the entrypoint): the pod's cluster.
RAY_ADDRESS_REF = "${oc.env:RAY_ADDRESS}"
ENV_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")
FILES = ("rayjob-train.yaml", "rayservice.yaml", "secrets.example.yaml")


@dataclass(frozen=True)
class PodSecret:
    """One value a pod reads from the Secret: as environment variable ``env`` or as file ``path``."""

    key: str
    recipe_key: str
    env: str | None = None
    path: str | None = None
    optional: bool = False
    head_only: bool = False


def export_kuberay(recipe: Any, workspace: Path, project_dir: Path, out_dir: Path, *,
                   recipe_data: dict[str, Any], model: dict[str, Any] | None = None) -> list[Path]:
    """Write ``rayjob-train.yaml``, ``rayservice.yaml`` and ``secrets.example.yaml`` into ``out_dir``.

    Args:
        recipe: the validated recipe (needs ``env.kubernetes``).
        workspace: the Loom workspace (the Serve config's slots come from its registry).
        project_dir: the project directory.
        out_dir: the directory to write (created).
        recipe_data: the composed recipe as ``load_recipe`` returns it (``${oc.env:...}`` kept,
            secrets as ``{env: VAR}``); shipped to the pods in a ConfigMap.
        model: ``registry.register``-style outputs for the serving slot; default: as
            ``export serve-config`` finds it (running app, then the registry's aliases).

    Returns:
        The files written. Without a registered model version there is nothing to serve yet:
        ``rayservice.yaml`` is left out (train with the RayJob, then export again).

    Raises:
        BackendError: ``env.kubernetes`` is missing, the HTTP host is loopback, the head has no
            CPU for the gateway, or the Serve config cannot be built (an API key's secret is
            unavailable).
    """
    kube = kubernetes_of(recipe)
    _check_http_host(recipe)
    _check_head_cpus(kube)
    secrets = pod_secrets(recipe, recipe_data)
    configmap = recipe_configmap(recipe, kube, recipe_data)
    docs = {"rayjob-train.yaml": [configmap, rayjob(recipe, kube, secrets)],
            "secrets.example.yaml": [secret_example(recipe, kube, secrets)]}
    serve_text = _serve_config_text(recipe, workspace, project_dir, model)
    if serve_text is not None:
        docs["rayservice.yaml"] = [configmap, rayservice(recipe, kube, secrets, serve_text)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = (f"# Written by `loom export kuberay recipe={recipe.name}` (and its overrides); regenerate "
           "it, do not edit it.\n")
    notes = {"secrets.example.yaml": create_secret_command(recipe, kube, secrets)}
    return [_write(out_dir / name, docs[name], top + notes.get(name, "")) for name in FILES if name in docs]


def kubernetes_of(recipe: Any) -> Any:
    """``env.kubernetes``, or a BackendError that says how to set it."""
    if recipe.env.kubernetes is None:
        raise BackendError("env.kubernetes is not set: KubeRay manifests need at least an image. "
                           "Add `env: {kubernetes: {image: REGISTRY/loom:TAG}}` to the recipe, or "
                           "`+env.kubernetes.image=REGISTRY/loom:TAG` to the command.")
    return recipe.env.kubernetes


def _check_http_host(recipe: Any) -> None:
    host = recipe.serving.http.host
    if host.startswith("127.") or host in ("localhost", "::1"):
        raise BackendError(f"serving.http.host is {host}: in a pod the Serve proxy would answer only "
                           "inside that pod, never the RayService's Kubernetes Service. Set it to 0.0.0.0 in "
                           "the recipe or add ++serving.http.host=0.0.0.0 (the API keys still guard it).")


def _check_head_cpus(kube: Any) -> None:
    if kube.head_cpus < 1:
        raise BackendError(
            f"env.kubernetes.head_cpus is {kube.head_cpus}: Loom's gateway (0.1 CPU) and each "
            "model's rollout controller run on the Ray head, so it needs a CPU for them, or the "
            "RayService never answers on /v1/predictions. Set env.kubernetes.head_cpus: 1 (the "
            "default) or more.")


def k8s_name(text: str, suffix: str = "") -> str:
    """``teama_churn`` → ``teama-churn``: an RFC 1123 name (63 characters at most with ``suffix``)."""
    base = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return base[:63 - len(suffix)].rstrip("-") + suffix


def secret_name(recipe: Any, kube: Any) -> str:
    """The Secret the pods read: ``env.kubernetes.secret_name`` or ``<app name>-secrets``."""
    return kube.secret_name or k8s_name(recipe.app_name, "-secrets")


def pod_secrets(recipe: Any, recipe_data: dict[str, Any]) -> list[PodSecret]:
    """Everything the pods read from the Secret, in a stable order.

    The Ray auth token; the Redis online store's password (replicas and the training driver open
    the store); the object store's keys of ``env.storage_s3`` (the training driver); each
    ``serving.auth.api_keys[*].key`` (only the RayService head: the Serve config
    carries their hashes, and ``loom`` commands run in the pod hash them again); and each
    environment variable an environment-driven recipe field reads (optional keys: without one, the
    field's own default applies).
    """
    found = [PodSecret(key=TOKEN_KEY, recipe_key="Ray token auth", env="RAY_AUTH_TOKEN")]
    password = getattr(recipe.features.store.online, "password", None)
    if password is not None:
        found.append(_from_ref(password, "features.store.online.password", "redis_password"))
    s3 = recipe.env.storage_s3
    if s3 is not None and s3.access_key_id is not None:  # the training driver builds the filesystem
        found.append(_from_ref(s3.access_key_id, "env.storage_s3.access_key_id", "s3_access_key_id"))
        found.append(_from_ref(s3.secret_access_key, "env.storage_s3.secret_access_key",
                               "s3_secret_access_key"))
    if recipe.serving.auth.enabled:
        for i, entry in enumerate(recipe.serving.auth.api_keys):
            found.append(_from_ref(entry.key, f"serving.auth.api_keys[{i}].key",
                                   f"api_key_{entry.name}", head_only=True))
    taken = {s.env for s in found} | {"RAY_ADDRESS"}
    for var in sorted(set(_env_refs(recipe_data)) - taken):
        found.append(PodSecret(key=var, recipe_key="${oc.env:%s}" % var, env=var, optional=True))
    unique: dict[str, PodSecret] = {}
    for secret in found:  # two keys from one variable are one entry (the first: the widest use)
        unique.setdefault(secret.key, secret)
    return list(unique.values())


def _from_ref(ref: Any, recipe_key: str, file_key: str, head_only: bool = False) -> PodSecret:
    if ref.env is not None:
        return PodSecret(key=ref.env, recipe_key=recipe_key, env=ref.env, head_only=head_only)
    return PodSecret(key=file_key, recipe_key=recipe_key, path=ref.file, head_only=head_only)


def _env_refs(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [v for item in data.values() for v in _env_refs(item)]
    if isinstance(data, list):
        return [v for item in data for v in _env_refs(item)]
    return ENV_REF.findall(data) if isinstance(data, str) else []


def recipe_configmap(recipe: Any, kube: Any, recipe_data: dict[str, Any]) -> dict[str, Any]:
    """The composed recipe the pods' ``loom`` reads, with ``env.ray_address`` the pod's own cluster."""
    import yaml

    data = {**recipe_data, "env": {**recipe_data.get("env", {}), "ray_address": RAY_ADDRESS_REF}}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(recipe, kube, k8s_name(recipe.app_name, "-recipe")),
            "data": {f"{recipe.name}.yaml": yaml.safe_dump(data, sort_keys=False)}}


def rayjob(recipe: Any, kube: Any, secrets: list[PodSecret]) -> dict[str, Any]:
    """The RayJob: ``loom train`` of the shipped recipe on a cluster sized by ``training.scaling``."""
    scaling = recipe.training.scaling
    pod_cpus = max(1, math.ceil(scaling.cpus_per_worker))
    worker = _group("train", _pod(recipe, kube, secrets, "worker", pod_cpus, gpu=scaling.use_gpu),
                    replicas=scaling.num_workers, cpus=pod_cpus, gpu=scaling.use_gpu,
                    custom=scaling.resources_per_worker)
    where = shlex.quote(kube.project_dir)
    entrypoint = f"cd {where} && loom --project {where} train recipe={RECIPE_DIR}/{recipe.name}.yaml"
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": _metadata(recipe, kube, k8s_name(recipe.app_name, "-train")),
            "spec": {"entrypoint": entrypoint, "shutdownAfterJobFinishes": True,
                     "ttlSecondsAfterFinished": 600,
                     "rayClusterSpec": _cluster(recipe, kube, secrets, [worker], autoscale=False)}}


def rayservice(recipe: Any, kube: Any, secrets: list[PodSecret], serve_text: str) -> dict[str, Any]:
    """The RayService: ``serveConfigV2`` as given, workers sized for the replicas ``serving`` asks."""
    serving = recipe.serving
    per_replica = serving.num_cpus_per_replica
    pod_cpus = max(1, math.ceil(per_replica))
    per_pod = max(1, math.floor(pod_cpus / per_replica + 1e-9))

    def pods(replicas: int) -> int:
        return math.ceil(replicas / per_pod)

    template = _pod(recipe, kube, secrets, "worker", pod_cpus, serve_port=True)
    per_pod_custom = {name: amount * per_pod for name, amount in serving.resources.items()}
    if serving.autoscaling is not None:
        scale = serving.autoscaling
        worker = _group("serve", template, replicas=pods(scale.min_replicas), cpus=pod_cpus,
                        custom=per_pod_custom, min_replicas=pods(scale.min_replicas),
                        max_replicas=max(1, pods(scale.max_replicas + serving.surge_replicas)))
    else:
        worker = _group("serve", template, replicas=pods(serving.replicas + serving.surge_replicas),
                        cpus=pod_cpus, custom=per_pod_custom)
    cluster = _cluster(recipe, kube, secrets, [worker], autoscale=serving.autoscaling is not None,
                       serving=True)
    return {"apiVersion": "ray.io/v1", "kind": "RayService",
            "metadata": _metadata(recipe, kube, k8s_name(recipe.app_name)),
            "spec": {"serveConfigV2": serve_text, "rayClusterConfig": cluster}}


def _cluster(recipe: Any, kube: Any, secrets: list[PodSecret], workers: list[dict[str, Any]],
             autoscale: bool, serving: bool = False) -> dict[str, Any]:
    head_params = {"num-cpus": str(kube.head_cpus),
                   "metrics-export-port": str(recipe.env.metrics_export_port)}
    head = _pod(recipe, kube, secrets, "head", kube.head_cpus, serve_port=serving, head=True)
    spec = {"rayVersion": _ray_version(),
            "authOptions": {"mode": "token", "secretName": secret_name(recipe, kube)},
            "headGroupSpec": {"rayStartParams": head_params, "template": head},
            "workerGroupSpecs": workers}
    if autoscale:
        spec["enableInTreeAutoscaling"] = True
    return spec


def _group(name: str, template: dict[str, Any], replicas: int, cpus: int, gpu: bool = False,
           custom: dict[str, float] | None = None, min_replicas: int | None = None,
           max_replicas: int | None = None) -> dict[str, Any]:
    params = {"num-cpus": str(cpus), **({"num-gpus": "1"} if gpu else {})}
    if custom:  # the recipe's custom resources, so its workers and replicas fit these pods
        # KubeRay passes the value to `ray start --resources=...` through a shell: a quoted JSON.
        params["resources"] = json.dumps(json.dumps({k: custom[k] for k in sorted(custom)}))
    return {"groupName": name, "replicas": replicas,
            "minReplicas": replicas if min_replicas is None else min_replicas,
            "maxReplicas": replicas if max_replicas is None else max_replicas,
            "rayStartParams": params, "template": template}


def _pod(recipe: Any, kube: Any, secrets: list[PodSecret], role: str, cpus: int, gpu: bool = False,
         serve_port: bool = False, head: bool = False) -> dict[str, Any]:
    mine = [s for s in secrets if not s.head_only or (head and serve_port)]
    mounts = [{"name": SECRET_VOLUME, "mountPath": _abs(kube, s.path), "subPath": s.key,
               "readOnly": True} for s in mine if s.path]
    volumes: list[dict[str, Any]] = []
    if mounts:
        volumes.append({"name": SECRET_VOLUME, "secret": {"secretName": secret_name(recipe, kube)}})
    if head:
        mounts.append({"name": RECIPE_VOLUME, "mountPath": RECIPE_DIR, "readOnly": True})
        volumes.append({"name": RECIPE_VOLUME,
                        "configMap": {"name": k8s_name(recipe.app_name, "-recipe")}})
    container: dict[str, Any] = {
        "name": f"ray-{role}", "image": kube.image, "workingDir": kube.project_dir,
        "env": [{"name": "RAY_AUTH_MODE", "value": "token"}]
               + [{"name": k, "value": v} for k, v in pod_env(recipe.env.ingress).items()]
               + [_env_var(recipe, kube, s) for s in mine if s.env],
        "resources": _resources(cpus, kube.memory_per_cpu_gib, gpu),
    }
    ports = _ports(recipe, head, serve_port)
    if ports:
        container["ports"] = ports
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {"containers": [container]}
    if volumes:
        spec["volumes"] = volumes
    if kube.service_account:
        spec["serviceAccountName"] = kube.service_account
    return {"metadata": {"labels": _labels(recipe)}, "spec": spec}


def _env_var(recipe: Any, kube: Any, secret: PodSecret) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret_name(recipe, kube), "key": secret.key}
    if secret.optional:
        ref["optional"] = True
    return {"name": secret.env, "valueFrom": {"secretKeyRef": ref}}


def _abs(kube: Any, path: str | None) -> str:
    return str(path) if str(path).startswith("/") else f"{kube.project_dir.rstrip('/')}/{path}"


def _ports(recipe: Any, head: bool, serve_port: bool) -> list[dict[str, Any]]:
    ports = []
    if head:
        ports += [{"name": "gcs-server", "containerPort": 6379},
                  {"name": "dashboard", "containerPort": 8265},
                  {"name": "client", "containerPort": 10001}]
    ports.append({"name": "metrics", "containerPort": recipe.env.metrics_export_port})
    if serve_port:
        ports.append({"name": "serve", "containerPort": recipe.serving.http.port})
    return ports


def _resources(cpus: int, memory_per_cpu_gib: float, gpu: bool) -> dict[str, Any]:
    cpus = max(cpus, 1)  # a head with num-cpus 0 still runs the driver and the GCS
    amount = {"cpu": str(cpus), "memory": f"{math.ceil(cpus * memory_per_cpu_gib * 1024)}Mi"}
    limits = {**amount, **({"nvidia.com/gpu": "1"} if gpu else {})}
    return {"requests": dict(amount), "limits": limits}


def secret_example(recipe: Any, kube: Any, secrets: list[PodSecret]) -> dict[str, Any]:
    """The Secret to create, every value empty: its keys, and in an annotation what reads each."""
    meta = _metadata(recipe, kube, secret_name(recipe, kube))
    meta["annotations"] = {f"loom/{s.key}": ("optional; " if s.optional else "") + s.recipe_key
                           for s in secrets}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "stringData": {s.key: "" for s in secrets}}


def create_secret_command(recipe: Any, kube: Any, secrets: list[PodSecret]) -> str:
    """A comment: the ``kubectl create secret`` that makes the Secret (values from your shell)."""
    lines = [f"kubectl create secret generic {secret_name(recipe, kube)} -n {kube.namespace}",
             f'--from-literal={TOKEN_KEY}="$(openssl rand -hex 32)"']
    lines += [f'--from-literal={s.key}="${s.env}"' if s.env else f"--from-file={s.key}={s.path}"
              for s in secrets if s.key != TOKEN_KEY and not s.optional]
    optional = ", ".join(s.key for s in secrets if s.optional)
    text = "# An example: never apply it as it is (that would empty the values). Create the Secret:\n#   "
    text += " \\\n#     ".join(lines) + "\n"
    if optional:
        text += f"# Optional keys (an environment-driven recipe field reads each): {optional}\n"
    return text


def _serve_config_text(recipe: Any, workspace: Path, project_dir: Path,
                       model: dict[str, Any] | None) -> str | None:
    """What ``loom export serve-config`` writes; None when no model version is registered yet."""
    from framework.backends.ray_serve.commands import export_serve_config

    with tempfile.TemporaryDirectory(prefix="loom-kuberay-") as tmp:
        try:
            path = export_serve_config(recipe, workspace, project_dir, Path(tmp) / "serve.yaml", model)
        except BackendError as exc:
            if str(exc).startswith("No registered version"):  # commands._registered: nothing to serve
                return None
            raise
        return path.read_text(encoding="utf-8")


def _metadata(recipe: Any, kube: Any, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": kube.namespace, "labels": _labels(recipe)}


def _labels(recipe: Any) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "loom", "loom/recipe": k8s_name(recipe.name),
            "loom/model": k8s_name(recipe.app_name)}


def _ray_version() -> str:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:  # pragma: no cover - Loom's pins install ray
        return "2.60.0"


def _write(path: Path, docs: list[dict[str, Any]], header: str = "") -> Path:
    import yaml

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (the recipe, ``serveConfigV2``) as readable ``|`` blocks."""

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    path.write_text(header + yaml.dump_all(docs, Dumper=Dumper, sort_keys=False), encoding="utf-8")
    return path
