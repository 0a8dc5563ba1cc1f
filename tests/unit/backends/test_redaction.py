"""Credentials inside a tracking URI never reach error text or audit lines."""

from __future__ import annotations

import pytest

from framework.backends.model_registry.tracking import redact_uri
from framework.errors import BackendError

CASES = [
    ("https://user:pass@mlflow.example:5000", "https://***@mlflow.example:5000"),
    ("https://tok3n@mlflow.example/api", "https://***@mlflow.example/api"),
    ("postgresql://loom:p@ss@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("https://mlflow.example/?token=abc&x=1", "https://mlflow.example/?token=***&x=1"),
    ("https://h/p?X-Amz-Signature=f00&X-Amz-Credential=AK/1&v=2",
     "https://h/p?X-Amz-Signature=***&X-Amz-Credential=***&v=2"),
    ("could not reach https://a:b@h:1/x (401); see http://c:d@e/f?api_key=k",
     "could not reach https://***@h:1/x (401); see http://***@e/f?api_key=***"),
    ("sqlite:////work/ws/mlflow/mlflow.db", "sqlite:////work/ws/mlflow/mlflow.db"),
    ("http://mlflow:5000", "http://mlflow:5000"),
    ("mail admin@example.com about https://host/x", "mail admin@example.com about https://host/x"),
    ("error rate 0.500 > 0.010", "error rate 0.500 > 0.010"),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:30] for c in CASES])
def test_redact_uri(text, expected):
    assert redact_uri(text) == expected
    assert redact_uri(expected) == expected  # redacting twice changes nothing


def test_a_registry_error_says_where_without_the_credentials(monkeypatch):
    from framework.rollout.engines import RegistryPromoter

    uri = "https://ci:s3cret@mlflow.example:5000/?token=tok3n"
    promoter = RegistryPromoter(uri, "churn")

    def client():
        raise ConnectionError(f"HTTPSConnectionPool: max retries for {uri}")

    monkeypatch.setattr(promoter, "_client", client)
    with pytest.raises(BackendError) as info:
        promoter.promote("4")
    text = str(info.value)
    assert "s3cret" not in text and "tok3n" not in text
    assert "MLflow at https://***@mlflow.example:5000/?token=***" in text
