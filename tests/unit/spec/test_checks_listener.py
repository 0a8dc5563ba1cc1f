"""check_unauthenticated_listener: auth off on a non-loopback host needs an explicit opt-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.loading import load_recipe
from framework.spec.checks import check_unauthenticated_listener


def _problems(project: Path, *overrides: str) -> list[str]:
    # Load with auth on (every check passes), then look at the listener rule on the variant.
    recipe = load_recipe(["recipe=churn", *overrides]).recipe
    return [p.path for p in check_unauthenticated_listener(recipe)]


def _variant(project: Path, host: str, enabled: bool, allow: bool) -> list[str]:
    recipe = load_recipe(["recipe=churn"]).recipe
    serving = recipe.serving.model_copy(update={
        "auth": recipe.serving.auth.model_copy(update={"enabled": enabled}),
        "http": recipe.serving.http.model_copy(update={"host": host, "allow_unauthenticated": allow}),
    })
    return [p.path for p in check_unauthenticated_listener(recipe.model_copy(update={"serving": serving}))]


@pytest.mark.parametrize("host,enabled,allow,refused", [
    ("0.0.0.0", False, False, True),
    ("::", False, False, True),
    ("10.1.2.3", False, False, True),
    ("my-host.example", False, False, True),
    ("0.0.0.0", False, True, False),
    ("0.0.0.0", True, False, False),
    ("127.0.0.1", False, False, False),
    ("127.0.0.2", False, False, False),
    ("localhost", False, False, False),
    ("::1", False, False, False),
])
def test_unauthenticated_listener(project: Path, host: str, enabled: bool, allow: bool, refused: bool) -> None:
    assert _variant(project, host, enabled, allow) == (["serving.http.host"] if refused else [])


def test_opt_in_loads(project: Path) -> None:
    assert _problems(project, "serving.auth.enabled=false", "serving.http.host=0.0.0.0",
                     "+serving.http.allow_unauthenticated=true") == []
