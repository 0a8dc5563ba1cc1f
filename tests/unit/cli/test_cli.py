"""The `loom` command as a user runs it: exit codes, messages without tracebacks, fast light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.cli import main

HEAVY = ("ray", "feast", "mlflow", "xgboost", "pandas", "pyarrow")


def loom(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "LOOM_API_KEY": "k"}, timeout=120)


def test_validate_ok(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", "recipe=churn"]) == 0
    assert "Recipe 'churn' is valid" in capsys.readouterr().out


def test_validate_error_exit_1_without_traceback(project: Path) -> None:
    res = loom("validate", "recipe=churn", "rollout.steps=[5,120]", cwd=project)
    assert res.returncode == 1
    assert "rollout.steps[1]: Got 120. Traffic percent must be 1..100." in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_debug_shows_the_traceback(project: Path) -> None:
    res = loom("--debug", "validate", "recipe=churn", "rollout=canry", cwd=project)
    assert res.returncode == 1 and "Traceback" in res.stderr


def test_show_redacts_secrets_and_explain_names_files(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", "recipe=churn", "--show", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "key: ${oc.env:LOOM_API_KEY}" in out
    assert "# conf/rollout/canary.yaml" in out and "# recipes/churn.yaml" in out


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parents[3] / "recipes").glob("*.yaml")))
def test_every_recipe_plans(project: Path, name: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", f"recipe={name}", "--detailed-exitcode"]) == 2
    assert "to create" in capsys.readouterr().out


def test_plan_saves_json_and_exit_codes(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", "recipe=churn", "-o", "plan.json"]) == 0
    data = json.loads((project / "plan.json").read_text())
    assert data["recipe_name"] == "churn" and len(data["steps"]) == 14
    assert main(["plan", "recipe=churn", "rollout=canry"]) == 1


def test_apply_unreadable_plan(project: Path, capsys: pytest.CaptureFixture) -> None:
    (project / "plan.json").write_text("nope")
    assert main(["apply", "plan.json"]) == 1
    assert "not a plan file" in capsys.readouterr().err


def test_validate_and_plan_import_no_engine_sdk(project: Path) -> None:
    code = ("import sys; from framework.cli import main; rc = main(%r); "
            "print('HEAVY=' + ','.join(m for m in %r if m in sys.modules)); sys.exit(rc)")
    # plan's preflight reads data schemas and the label column with pyarrow (no engine, no pandas)
    for args, heavy in ((["validate", "recipe=churn"], HEAVY), (["plan", "recipe=churn"], HEAVY[:-1])):
        res = subprocess.run([sys.executable, "-c", code % (args, heavy)], cwd=project, capture_output=True,
                             text=True, env={**os.environ, "LOOM_API_KEY": "k"}, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "HEAVY=\n" in res.stdout, res.stdout


def test_schema_command(project: Path) -> None:
    assert main(["schema", "-o", "s.json"]) == 0
    assert json.loads((project / "s.json").read_text())["title"] == "Loom recipe"


def test_layer_contracts() -> None:
    """import-linter enforces the layering of DESIGN.md (spec < loading < compile < execute < api < cli)."""
    root = Path(__file__).resolve().parents[3]
    res = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
