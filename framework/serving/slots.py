"""Version slots: the stable model and, during a rollout, a candidate, set from ``user_config``."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any

ROLES = ("stable", "candidate")
#: The replica environment variable that lets ``user_config`` inject faults (tests, benchmarks).
FAULTS_ENV = "LOOM_TEST_FAULTS"
logger = logging.getLogger("loom.serving")


def faults_allowed() -> bool:
    """Whether this process honours a slot's ``fault``: only with ``LOOM_TEST_FAULTS=1`` in its
    environment, which tests and benchmarks set and no recipe or Serve config Loom writes can."""
    return os.environ.get(FAULTS_ENV) == "1"


class ModelFault(RuntimeError):
    """A slot's prediction failed (a real model error, or one injected through ``fault``)."""


@dataclass
class Slot:
    """A loaded model version and the fault injected into it, if any."""

    version: str
    model_path: str
    model_uri: str
    booster: Any
    error_rate: float = 0.0
    extra_latency_ms: float = 0.0
    codec: Any = None  # a VersionCodec: the version's feature order, categories and labels
    profile_path: str | None = None  # its training reference profile (monitoring.drift bins)

    def describe(self) -> dict[str, Any]:
        """Version, URI and contract, for ``GET /v1/models`` (never an injected fault)."""
        contract = getattr(self.codec, "contract", None)
        return {"version": self.version, "model_uri": self.model_uri,
                "contract": contract.model_dump(mode="json") if contract is not None else None}


def load_booster(path: str, compiled_path: str | None = None, compiled_sha256: str | None = None) -> Any:
    """An XGBoost booster from a UBJ or JSON file (never pickle), or with ``compiled_path`` the
    same version compiled to native code (``serving.predictor``), which answers ``inplace_predict``
    alike."""
    import xgboost

    if not path.endswith((".ubj", ".json")):
        raise ValueError(f"model file {path!r}: Loom loads XGBoost .ubj or .json files only")
    booster = xgboost.Booster(model_file=path)
    booster.set_param({"nthread": 1})
    if compiled_path:
        from framework.serving.compiled import load_compiled

        booster = load_compiled(compiled_path, booster, compiled_sha256)
    _warm(booster)
    return booster


def fetch_version(model_store: str, model_uri: str,
                  compiled: bool = False) -> tuple[str, str | None, str | None]:
    """The local UBJ file, training profile and (``compiled``) native library of
    ``models:/NAME/VERSION``, downloaded once from the MLflow server ``model_store`` into this
    node's cache (a 0700 directory of this user's).

    Raises:
        ValueError: ``model_uri`` is not a registry URI.
        BackendError: the server or the version cannot be reached (the message names them).
    """
    import hashlib
    import tempfile
    from pathlib import Path

    from framework.backends.model_registry.versions import resolve_model

    name, _, version = model_uri.removeprefix("models:/").partition("/")
    if not model_uri.startswith("models:/") or not name or not version:
        raise ValueError(f"model_uri {model_uri!r}: a replica downloads models:/NAME/VERSION only")
    root = Path(tempfile.gettempdir()) / f"loom-models-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{root} is not this user's own 0700 directory: remove it")
    target = root / hashlib.sha256(model_store.encode()).hexdigest()[:12] / name / version
    if not target.is_dir():
        # Into a fresh directory first, then renamed: another replica on this node never reads
        # half a download, and whichever rename comes second finds the first one's copy.
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}-"))
        resolve_model(model_store, name, version, dst_dir=fresh)
        try:
            fresh.rename(target)
        except OSError:
            import shutil

            shutil.rmtree(fresh, ignore_errors=True)
    model = resolve_model(model_store, name, version, dst_dir=target)  # nothing left to download
    lib = None
    if compiled:
        from framework.backends.model_registry.versions import download_run_file
        from framework.serving.compiled import LIB_FILE

        got = download_run_file(model_store, model["run_id"], target, LIB_FILE)
        if got is None:
            raise ValueError(f"{model_uri} has no compiled library ({LIB_FILE}) in MLflow: deploy "
                             "it again with serving.predictor set")
        lib = str(got)
    return model["model_path"], model.get("profile_path"), lib


def _warm(booster: Any) -> None:
    # XGBoost's first predict sets up its predictor (~25 ms): paid here, at load, not by a request.
    import numpy as np

    try:
        booster.inplace_predict(np.zeros((1, max(booster.num_features(), 1)), dtype=np.float32))
    except Exception:  # noqa: BLE001 - then its first request fails, into the fallbacks
        pass


@dataclass
class SlotTable:
    """The slots a replica serves, the traffic split, and a cache of loaded boosters."""

    stable: Slot | None = None
    candidate: Slot | None = None
    previous: Slot | None = None
    candidate_weight: float = 0.0
    shadow_percent: float = 0.0
    config_version: int = 0
    record_samples: bool = False  # a rollout's controller reads per-request samples meanwhile
    #: (feature names, task, labels) of the app, for versions registered without a contract.
    defaults: tuple[list[str], str, Any] = (["x"], "binary", None)
    #: The MLflow server versions are downloaded from (``AppArgs.model_store``); "": model_path.
    model_store: str = ""
    _boosters: dict[tuple[str, str], Any] = field(default_factory=dict)

    def apply(self, user_config: dict[str, Any]) -> set[str]:
        """Take a new ``user_config``; returns the versions now live (for cache invalidation).

        A stable version replaced in place is kept as ``previous`` for the fallback chain.

        Raises:
            ValueError: the document is not a ``UserConfig`` (naming the bad keys).
        """
        from framework.serving.control import UserConfig

        doc = UserConfig.parse(user_config)
        old_stable = self.stable
        stable = self._slot(doc.slots.stable)
        self.stable = stable
        self.candidate = self._slot(doc.slots.candidate)
        named_previous = self._slot(doc.slots.previous)
        if named_previous is not None:
            self.previous = named_previous
        elif old_stable is not None and old_stable.version != stable.version:
            self.previous = old_stable
        self.candidate_weight = doc.candidate_weight
        self.shadow_percent = doc.shadow_percent
        self.config_version = doc.config_version
        self.record_samples = doc.record_samples
        live = {s.version for s in (self.stable, self.candidate, self.previous) if s is not None}
        self._boosters = {k: v for k, v in self._boosters.items() if k[0] in live}
        return live

    def _slot(self, spec: Any) -> Any:
        if spec is None:
            return None
        version, path, profile, lib = (spec.version, spec.model_path, spec.profile_path,
                                       spec.compiled_path)
        if self.model_store:
            path, profile, lib = fetch_version(self.model_store, spec.model_uri, compiled=bool(lib))
        booster = self._boosters.get((version, path, lib))
        if booster is None:
            booster = self._boosters[(version, path, lib)] = load_booster(path, lib,
                                                                         spec.compiled_sha256)
        from framework.serving.encoding import VersionCodec

        fault = spec.fault
        if fault is not None and not faults_allowed():
            logger.warning("user_config.slots: the fault of version %s is ignored: fault injection "
                           "is for tests, honoured only with %s=1 in the replica's environment",
                           version, FAULTS_ENV)
            fault = None
        return Slot(version, path, spec.model_uri, booster,
                    fault.error_rate if fault else 0.0, fault.extra_latency_ms if fault else 0.0,
                    VersionCodec(spec.contract, *self.defaults), profile)

    def pick(self, rng: random.Random) -> tuple[str, Slot]:
        """The role and slot that answers one request, by ``candidate_weight`` percent."""
        if self.candidate is not None and rng.random() * 100 < self.candidate_weight:
            return "candidate", self.candidate
        return "stable", self.stable  # type: ignore[return-value]

    def pinned(self, pin: str) -> Slot | None:
        """The loaded slot a request pins by version (``2``) or role alias (``stable``,
        ``champion`` — what production serves —, ``candidate``, ``previous``); None if not loaded."""
        by_role = {"stable": self.stable, "champion": self.stable, "candidate": self.candidate,
                   "previous": self.previous}
        if pin in by_role:
            return by_role[pin]
        return next((s for s in (self.stable, self.candidate, self.previous)
                     if s is not None and s.version == pin), None)

    def loaded(self) -> str:
        """``1 (stable), 2 (candidate)``: what a pin may name, for messages."""
        slots = (("stable", self.stable), ("candidate", self.candidate), ("previous", self.previous))
        return ", ".join(f"{s.version} ({role})" for role, s in slots if s is not None) or "none"

    def wants_shadow(self, role: str, rng: random.Random) -> bool:
        """Whether a stable-answered request is also sent to the candidate (answer never returned)."""
        return (role == "stable" and self.candidate is not None
                and rng.random() * 100 < self.shadow_percent)

    def describe(self) -> dict[str, Any]:
        """Slots, weights and config version for ``GET /v1/models``."""
        return {
            "stable": self.stable.describe() if self.stable else None,
            "candidate": self.candidate.describe() if self.candidate else None,
            "previous": self.previous.describe() if self.previous else None,
            "candidate_weight": self.candidate_weight,
            "shadow_percent": self.shadow_percent,
            "config_version": self.config_version,
        }
