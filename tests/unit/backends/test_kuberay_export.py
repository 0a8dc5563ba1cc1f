"""``loom export kuberay``: manifests KubeRay v1.7.0's CRDs accept, the Serve config of ``export
serve-config``, pods sized by the recipe, and secrets only as references."""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from framework.backends import kuberay, ray_ingress
from framework.backends.ray_serve import commands
from framework.errors import BackendError
from framework.loading import load_recipe

KUBERAY_VERSION = "v1.7.0"
CRDS = Path(__file__).resolve().parents[2] / "fixtures" / "kuberay" / KUBERAY_VERSION
MODEL = {"version": "3", "model_path": "/models/churn/3/model.ubj", "model_uri": "models:/churn/3"}
K8S = ["+env.kubernetes.image=registry.example.com/loom:1.0", "++serving.http.host=0.0.0.0"]
API_KEY = "sentinel-api-key-7f3a9c"
REDIS_PASSWORD = "sentinel-redis-password-41d2"

#: ObjectMeta as far as Loom writes it (the CRDs say only ``type: object`` for metadata).
LABELS = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63,
                                                      "pattern": r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"}}
OBJECT_META = {
    "type": "object", "required": ["name", "namespace"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                   "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                   "labels": LABELS, "annotations": {"type": "object",
                                                     "additionalProperties": {"type": "string"}}},
}


def _strict(node: Any) -> Any:
    """The CRD schema as a strict JSON Schema: an object with ``properties`` accepts no other key.

    The API server prunes unknown fields silently (or rejects them with field validation Strict,
    kubectl's default since 1.27); here a misspelt field fails the test. ``x-kubernetes-*``
    keywords are not JSON Schema and are ignored by the validator, except that
    ``x-kubernetes-preserve-unknown-fields`` keeps an object open. The CEL rules
    (``x-kubernetes-validations``) of these CRDs concern ``managedBy``, ``deletionStrategy`` and
    GCS fault tolerance, none of which Loom writes.
    """
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    file = {"RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}[kind]
    crd = yaml.load((CRDS / file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert version["served"] and version["storage"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(doc["kind"]).iter_errors(doc)]


def _export(tmp_path: Path, *overrides: str, model: dict[str, Any] | None = MODEL) -> dict[str, list[dict]]:
    loaded = load_recipe(["recipe=churn", *K8S, *overrides])
    paths = kuberay.export_kuberay(loaded.recipe, tmp_path / ".loom", loaded.project_dir,
                                   tmp_path / "kuberay", recipe_data=loaded.data, model=model)
    return {p.name: list(yaml.safe_load_all(p.read_text())) for p in paths}


def _kind(files: dict[str, list[dict]], kind: str) -> dict[str, Any]:
    return next(d for docs in files.values() for d in docs if d["kind"] == kind)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _secret_refs(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", [])
            if "valueFrom" in e}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_API_KEY", API_KEY)
    monkeypatch.setenv("LOOM_REDIS_PASSWORD", REDIS_PASSWORD)


@pytest.mark.parametrize("overrides", [
    (), ("serving=autoscaling",), ("scaling=cluster_gpu",), ("store=redis",),
    ("env.ingress=haproxy",),
    ("env.project=teama", "+serving.route_prefix=/teama", "+env.kubernetes.namespace=ml-prod",
     "+env.kubernetes.service_account=loom-runner", "+env.kubernetes.head_cpus=2"),
], ids=["standard", "autoscaling", "gpu", "redis", "haproxy", "project"])
def test_every_manifest_validates_against_the_kuberay_crds(project: Path, tmp_path: Path, overrides):
    files = _export(tmp_path, *overrides)
    assert sorted(files) == ["rayjob-train.yaml", "rayservice.yaml", "secrets.example.yaml"]
    for kind in ("RayJob", "RayService"):
        doc = _kind(files, kind)
        assert doc["apiVersion"] == "ray.io/v1"
        assert _errors(doc) == [], kind
    for name in ("rayjob-train.yaml", "rayservice.yaml"):  # each file carries the recipe it runs
        assert [d["kind"] for d in files[name]][0] == "ConfigMap"


def test_the_strict_validator_rejects_a_misspelt_field(project: Path, tmp_path: Path):
    job = _kind(_export(tmp_path), "RayJob")
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replica"] = 2
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 1
    errors = _errors(job)
    assert any("'replica' was unexpected" in e for e in errors), errors
    assert any("rayStartParams.num-cpus: 1 is not of type 'string'" in e for e in errors), errors


def test_serve_config_v2_is_what_export_serve_config_writes(project: Path, tmp_path: Path):
    service = _kind(_export(tmp_path, "store=redis"), "RayService")
    loaded = load_recipe(["recipe=churn", *K8S, "store=redis"])
    out = commands.export_serve_config(loaded.recipe, tmp_path / ".loom", loaded.project_dir,
                                       tmp_path / "serve.yaml", MODEL)
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == yaml.safe_load(out.read_text())
    assert service["spec"]["serveConfigV2"] == out.read_text()


def test_no_secret_value_reaches_any_file(project: Path, tmp_path: Path):
    password = "+features.store.online.password=${oc.env:LOOM_REDIS_PASSWORD}"
    files = _export(tmp_path, "store=redis", password)
    text = "".join(p.read_text() for p in (tmp_path / "kuberay").iterdir())
    assert API_KEY not in text and REDIS_PASSWORD not in text
    assert hashlib.sha256(API_KEY.encode()).hexdigest() in text  # the replicas' check, as in serve-config
    for kind in ("RayJob", "RayService"):
        doc = _kind(files, kind)
        assert doc["spec"].get("rayClusterSpec", doc["spec"].get("rayClusterConfig"))["authOptions"] == {
            "mode": "token", "secretName": "churn-secrets"}
        for container in _containers(doc):
            refs = _secret_refs(container)
            assert refs["RAY_AUTH_TOKEN"] == "auth_token"
            assert refs["LOOM_REDIS_PASSWORD"] == "LOOM_REDIS_PASSWORD"
            plain = [e["name"] for e in container["env"] if "value" in e]   # settings, no secret
            assert plain == ["RAY_AUTH_MODE", *ray_ingress.pod_env("haproxy")]
    head = _containers(_kind(files, "RayService"))[0]
    assert _secret_refs(head)["LOOM_API_KEY"] == "LOOM_API_KEY"
    assert all("LOOM_API_KEY" not in _secret_refs(c) for c in _containers(_kind(files, "RayJob")))
    secret = _kind(files, "Secret")
    assert set(secret["stringData"].values()) == {""}
    assert {"auth_token", "LOOM_API_KEY", "LOOM_REDIS_PASSWORD", "LOOM_REDIS"} <= set(secret["stringData"])


def test_a_file_secret_is_mounted_from_the_secret(project: Path, tmp_path: Path):
    key_file = tmp_path / "keys" / "default"
    key_file.parent.mkdir()
    key_file.write_text(API_KEY + "-file")
    files = _export(tmp_path, f"serving.auth.api_keys=[{{name: default, key: {{file: '{key_file}'}}}}]")
    assert API_KEY not in "".join(p.read_text() for p in (tmp_path / "kuberay").iterdir())
    head = _containers(_kind(files, "RayService"))[0]
    assert {"name": "loom-secrets", "mountPath": str(key_file), "subPath": "api_key_default",
            "readOnly": True} in head["volumeMounts"]
    assert "api_key_default" in _kind(files, "Secret")["stringData"]
    assert all("subPath" not in str(c) for c in _containers(_kind(files, "RayJob")))


def test_pods_follow_training_scaling_and_serving(project: Path, tmp_path: Path):
    files = _export(tmp_path, "training.scaling.num_workers=3", "training.scaling.cpus_per_worker=2",
                    "training.scaling.use_gpu=true", "serving.replicas=4", "+env.kubernetes.memory_per_cpu_gib=4")
    job = _kind(files, "RayJob")
    [train] = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert (train["replicas"], train["minReplicas"], train["maxReplicas"]) == (3, 3, 3)
    assert train["rayStartParams"] == {"num-cpus": "2", "num-gpus": "1"}
    limits = train["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "8192Mi", "nvidia.com/gpu": "1"}
    assert job["spec"]["entrypoint"] == "cd /app && loom --project /app train recipe=/loom/recipe/churn.yaml"
    assert job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] \
        == "registry.example.com/loom:1.0"
    [serve] = _kind(files, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert serve["replicas"] == 3  # 4 replicas + 1 surge at 0.5 CPU: two per 1-CPU pod
    assert serve["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"


def test_haproxy_ingress_reaches_every_pod(project: Path, tmp_path: Path):
    files = _export(tmp_path, "env.ingress=haproxy")
    for kind in ("RayJob", "RayService"):
        for container in _containers(_kind(files, kind)):
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1", kind
            assert env["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure empty-response"
            assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in env   # pods bind to their own address
    plain = _export(tmp_path / "plain", "env.ingress=proxy")
    assert not any(e["name"].startswith("RAY_SERVE_") for c in _containers(_kind(plain, "RayService"))
                   for e in c["env"])


def test_autoscaling_serving_lets_kuberay_add_pods(project: Path, tmp_path: Path):
    cluster = _kind(_export(tmp_path, "serving=autoscaling", "serving.num_cpus_per_replica=1.5"),
                    "RayService")["spec"]["rayClusterConfig"]
    [serve] = cluster["workerGroupSpecs"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert serve["rayStartParams"]["num-cpus"] == "2"  # one 1.5-CPU replica per 2-CPU pod
    loaded = load_recipe(["recipe=churn", *K8S, "serving=autoscaling"])
    scale = loaded.recipe.serving.autoscaling
    assert (serve["minReplicas"], serve["maxReplicas"]) == (
        scale.min_replicas, scale.max_replicas + loaded.recipe.serving.surge_replicas)


def test_namespace_and_names_come_from_env(project: Path, tmp_path: Path):
    files = _export(tmp_path, "env.project=teama", "+serving.route_prefix=/teama",
                    "+env.kubernetes.namespace=ml-prod", "+env.kubernetes.secret_name=shared-ray",
                    "+env.kubernetes.service_account=loom-runner")
    docs = [d for ds in files.values() for d in ds]
    assert {d["metadata"]["namespace"] for d in docs} == {"ml-prod"}
    assert _kind(files, "RayService")["metadata"]["name"] == "teama-churn"
    assert _kind(files, "RayJob")["metadata"]["name"] == "teama-churn-train"
    assert _kind(files, "Secret")["metadata"]["name"] == "shared-ray"
    pod = _kind(files, "RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "loom-runner"
    assert pod["volumes"][-1]["configMap"]["name"] == "teama-churn-recipe"


def test_the_shipped_recipe_composes_to_the_same_recipe(project: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    files = _export(tmp_path, "training.scaling.num_workers=3")
    [(name, text)] = _kind(files, "ConfigMap")["data"].items()
    shipped = tmp_path / "pod" / name
    shipped.parent.mkdir()
    shipped.write_text(text)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # what KubeRay sets in the pod
    in_pod = load_recipe([f"recipe={shipped}"]).recipe.model_dump(mode="json")
    here = load_recipe(["recipe=churn", *K8S, "training.scaling.num_workers=3"]).recipe.model_dump(mode="json")
    assert in_pod["env"].pop("ray_address") == "10.0.0.5:6379"
    here["env"].pop("ray_address")
    assert in_pod == here


def test_errors_name_the_key_and_the_fix(project: Path, tmp_path: Path):
    loaded = load_recipe(["recipe=churn", "serving.http.host=0.0.0.0"])
    with pytest.raises(BackendError, match=r"env.kubernetes is not set.*\+env.kubernetes.image="):
        kuberay.export_kuberay(loaded.recipe, tmp_path, project, tmp_path / "k", recipe_data=loaded.data)
    loaded = load_recipe(["recipe=churn", K8S[0]])
    with pytest.raises(BackendError, match=r"serving.http.host is 127.0.0.1.*\+\+serving.http.host=0.0.0.0"):
        kuberay.export_kuberay(loaded.recipe, tmp_path, project, tmp_path / "k", recipe_data=loaded.data)
    # The gateway runs on the head (pinned there, so a lost worker pod never takes it along).
    loaded = load_recipe(["recipe=churn", *K8S, "+env.kubernetes.head_cpus=0"])
    with pytest.raises(BackendError, match=r"env.kubernetes.head_cpus is 0: .* Set env.kubernetes.head_cpus: 1"):
        kuberay.export_kuberay(loaded.recipe, tmp_path, project, tmp_path / "k", recipe_data=loaded.data)


def test_without_a_registered_version_only_the_rayjob_is_written(project: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    def unregistered(*args: Any, **kwargs: Any) -> Path:
        raise BackendError("No registered version of model 'churn' (alias champion or candidate) in x.")

    monkeypatch.setattr(commands, "export_serve_config", unregistered)
    assert sorted(_export(tmp_path, model=None)) == ["rayjob-train.yaml", "secrets.example.yaml"]


def test_the_cli_writes_the_directory(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]):
    from framework import cli

    real = commands.export_serve_config
    monkeypatch.setattr(commands, "export_serve_config",  # the registry's champion, without MLflow
                        lambda recipe, ws, pd, out, model=None: real(recipe, ws, pd, out, MODEL))
    assert cli.main(["export", "kuberay", "recipe=churn", *K8S, "-o", str(tmp_path / "k8s")]) == 0
    assert sorted(p.name for p in (tmp_path / "k8s").iterdir()) == [
        "rayjob-train.yaml", "rayservice.yaml", "secrets.example.yaml"]
    assert "rayservice.yaml" in capsys.readouterr().out
