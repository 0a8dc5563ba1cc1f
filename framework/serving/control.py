"""The document the control plane sends to replicas: a model's Serve ``user_config``, typed.

One model for both sides: the deploy step and the rollout controller build it, ``traffic`` checks
it before Serve sees it (a bad reconfigure would fail the whole deployment), and replicas read it
in ``reconfigure``. On the wire it is a plain JSON object::

    {"slots": {"stable": {"version", "model_path", "model_uri"[, "fault"][, "contract"][, "profile_path"]
                          [, "compiled_path"]},
               "candidate": null | {...}, "previous": null | {...}},
     "candidate_weight": 0..100, "shadow_percent": 0..100, "config_version": int,
     "record_samples": bool}

``fault`` injects errors or latency into a slot; tests and benchmarks use it to make a bad
candidate on purpose. Replicas honour it only with ``LOOM_TEST_FAULTS=1`` in their environment
(``slots.faults_allowed``): no recipe or Serve config Loom writes sets it, and ``GET /v1/models``
never shows it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from framework.compile.contract import Contract


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fault(_Doc):
    """Injected trouble in one slot."""

    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of predictions that fail.")
    extra_latency_ms: float = Field(default=0.0, ge=0, description="Added to every prediction.")


class SlotSpec(_Doc):
    """One model version a replica loads."""

    version: str = Field(min_length=1, description="Registered model version.")
    model_path: str = Field(min_length=1, description="XGBoost .ubj or .json file to load.")
    model_uri: str = Field(default="", description="Where the registry keeps it (for people).")
    fault: Fault | None = Field(default=None, description="Injected trouble (tests only: "
                                "ignored unless the replica's environment has LOOM_TEST_FAULTS=1).")
    contract: Contract | None = Field(
        default=None, description="The version's contract (task, labels, features, categories).")
    profile_path: str | None = Field(
        default=None, description="The version's training reference profile (JSON): the replicas "
        "bin features and scores in its bins (monitoring.drift).")
    compiled_path: str | None = Field(
        default=None, description="The version compiled to native code (serving.predictor), "
        "checked against XGBoost by the deploy step; replicas predict with it instead.")
    compiled_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="The sha256 of that library as the "
        "deploy step checked it: a replica loads no other bytes (native code).")

    @field_validator("version", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("model_path")
    @classmethod
    def _xgboost_file(cls, value: str) -> str:
        if not value.endswith((".ubj", ".json")):
            raise ValueError(f"Got {value!r}. Loom serves XGBoost .ubj or .json files only")
        return value


class Slots(_Doc):
    """The stable version, a candidate during a rollout, the previous stable for the fallback."""

    stable: SlotSpec
    candidate: SlotSpec | None = None
    previous: SlotSpec | None = None


class UserConfig(_Doc):
    """A model app's whole ``user_config``."""

    slots: Slots
    candidate_weight: float = Field(default=0.0, ge=0, le=100, description="Percent to the candidate.")
    shadow_percent: float = Field(default=0.0, ge=0, le=100, description="Percent mirrored to it.")
    config_version: int = Field(default=0, ge=0, description="Grows with every change.")
    record_samples: bool = Field(default=False, description="Replicas keep per-request samples "
                                 "for the rollout controller (only while a rollout runs).")

    @classmethod
    def parse(cls, doc: Any) -> "UserConfig":
        """``doc`` as a UserConfig; ``ValueError`` naming every bad key (``user_config.<path>``)."""
        if isinstance(doc, UserConfig):
            return doc
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(
                f"user_config.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False))
            raise ValueError(problems) from None

    def to_doc(self) -> dict[str, Any]:
        """The JSON object Serve carries (slots without a fault have no ``fault`` key)."""
        doc = self.model_dump(mode="json")
        for slot in doc["slots"].values():
            for key in ("fault", "contract", "profile_path", "compiled_path", "compiled_sha256"):
                if slot is not None and slot.get(key) is None:
                    slot.pop(key, None)
        return doc


def same(a: Any, b: Any) -> bool:
    """Whether two user_config documents say the same thing (however each was written)."""
    if a is None or b is None:
        return a is b
    try:
        return UserConfig.parse(a) == UserConfig.parse(b)
    except ValueError:
        return False
