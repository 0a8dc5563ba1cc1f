"""Ray runtime choices (address, temp dir) and that importing the training backends stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from framework.backends.ray_cluster import temp_dir
from framework.backends.ray_runtime import resolve_address
from framework.spec.env import Env


class _Recipe:
    """Just the ``env`` part of a recipe, which is all the runtime reads."""

    def __init__(self, **env) -> None:
        self.env = Env(**env)


def test_address_from_recipe_then_a_running_head_then_embedded(tmp_path: Path) -> None:
    assert resolve_address(_Recipe(ray_address="ray://h:10001"), tmp_path) == "ray://h:10001"
    assert resolve_address(_Recipe(), tmp_path) is None
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "address").write_text("127.0.0.1:1\n")
    # A head that died leaves its address file: nothing answers there, so start a local Ray.
    assert resolve_address(_Recipe(), tmp_path) is None


def test_temp_dir_in_workspace_unless_socket_paths_would_be_too_long(tmp_path: Path) -> None:
    assert str(temp_dir(Path("/w/.loom"))) == "/w/.loom/ray/tmp"
    long = tmp_path / ("x" * 80)
    short = str(temp_dir(long))
    assert short.startswith("/tmp/loom-ray-") and short == str(temp_dir(long))


def test_importing_training_backends_imports_no_sdk() -> None:
    code = ("import sys, framework.backends.ray_train, framework.backends.ray_tune, "
            "framework.backends.model_registry, framework.backends.ray_runtime; "
            "print([m for m in ('ray', 'mlflow', 'xgboost') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
