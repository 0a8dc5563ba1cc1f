"""The ``registry`` section: where trained models are tracked and how their aliases are named."""

from pydantic import Field

from framework.spec.base import ENV_DRIVEN, Name, Spec


class Registry(Spec):
    """MLflow tracking and model registry settings."""

    tracking_uri: str | None = Field(
        default=None,
        description=(
            "MLflow tracking URI; null means a SQLite store in the workspace. "
            "May come from ${oc.env:MLFLOW_TRACKING_URI}."
        ),
        json_schema_extra=ENV_DRIVEN,
    )
    model_name: Name | None = Field(
        default=None, description="Registered model name; defaults to the recipe name."
    )
    experiment: str | None = Field(
        default=None, description="MLflow experiment name; defaults to 'loom/<recipe name>'."
    )
    candidate_alias: Name = Field(
        default="candidate", description="Alias set on every newly registered version."
    )
    champion_alias: Name = Field(
        default="champion", description="Alias of the version in production; moved only on promotion."
    )
    contract: int = Field(
        default=1,
        ge=1,
        description=(
            "Major contract of the model: its task and typed feature list. Versions of one major "
            "contract are interchangeable; changing the task or the features of a served model is "
            "refused at plan time unless this number grows. Each version answers in its own "
            "contract, and every answer says which contract answered."
        ),
    )
